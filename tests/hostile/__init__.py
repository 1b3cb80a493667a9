"""Hostile devices (issue 17): small servers on 127.0.0.1 that misbehave on purpose, one behaviour each.

Every server runs in a thread with an event loop of its own, like a device on the network: a
kentei bug that blocks its own loop cannot also stall the device and hide what it would do.
"""

"""kentei: conformance and security test harness for CNC controller network interfaces."""

__version__ = "0.1.0"

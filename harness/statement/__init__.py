"""The compliance test statement (issue 16): a finished run's evidence as a document to file."""

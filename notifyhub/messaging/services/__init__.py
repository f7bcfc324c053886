"""Writes of the messaging pipeline: accept, dispatch, deliver and maintenance."""

"""The REST API (DRF): thin views that validate, call a service and serialize the result."""

"""The service layer: drives the domain engine from an input source to an output sink."""

"""What clients do against the system under test: register, list-append, ..."""

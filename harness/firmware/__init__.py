"""The test firmware seen from the harness: building firmware/hil_app and checking it statically."""

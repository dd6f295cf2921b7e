"""What the gateway and the workers both use. Imports neither service."""

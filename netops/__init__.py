"""netops: an AI console for network operations."""

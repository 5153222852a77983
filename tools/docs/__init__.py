"""Documentation writers: pages made from the nodes themselves (node help)."""

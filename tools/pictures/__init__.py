"""The pack's pictures, made from its own code and outputs: the registry icon, the Templates browser's
thumbnails, the node help pages' pictures."""

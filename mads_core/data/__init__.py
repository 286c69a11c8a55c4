"""Records: reading instruction data in its many formats, the bundled demo, export."""

"""The sync worker: sources, mirrors, tarballs, the `tardist` command line."""

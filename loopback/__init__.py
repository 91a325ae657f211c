"""Loopback servers shared by tests/ and bench/, so that neither imports the other.

`gitdaemon`: a real `git daemon` and a git server that refuses every request, free ports, stopping a server.
`servers`: git remotes that misbehave (never answer, hang in the fetch) and a port nobody listens on.
"""

"""Spaces, roles and the rules between them: pure logic, no I/O."""

"""Live captions: the program's speech recognized in a separate process, as cues."""

"""The audience plane: everything one space sends to an unbounded number of listeners.

The program is encoded once (``program``) and every listener byte is pre-built and
shared: the live fan-out (``fanout``), HLS/CMAF (``hls``) and the recording
(``recorder``). Admission, tickets and the snapshot live here too, in their own modules.
"""

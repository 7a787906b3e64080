"""The tutorials' applications built on pysock: the UDP chat room
(chat.py), two-way talk over TCP (talk.py), and reading stdin and a socket
at once (interactive.py)."""

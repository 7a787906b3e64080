"""The struct lessons: struct sockaddr_in and struct hostent as C fills them
(addr.py), every socket struct's layout from the compiler (layout.py), and
a hostent beside Python's own resolvers (resolve.py)."""

"""The tutorials' clients (../shared/seeds/), kept as written but for two
changes: the message comes from the test instead of input(), and the server
is 127.0.0.1 at the port the test's server bound, instead of gethostname()
at 12000."""
from socket import AF_INET, SOCK_DGRAM, SOCK_STREAM, socket


def udp_client_000(message, serverName, serverPort):
    clientSocket = socket(AF_INET, SOCK_DGRAM)
    clientSocket.settimeout(5)
    clientSocket.sendto(message.encode(), (serverName, serverPort))
    modifiedMessage, serverAddress = clientSocket.recvfrom(2048)
    clientSocket.close()
    return modifiedMessage.decode()


def tcp_client_000(sentence, serverName, serverPort):
    clientSocket = socket(AF_INET, SOCK_STREAM)
    clientSocket.settimeout(5)
    clientSocket.connect((serverName, serverPort))
    clientSocket.send(sentence.encode())
    modifiedSentence = clientSocket.recv(1024)
    clientSocket.close()
    return "From server: " + modifiedSentence.decode()


def tcp_client_003(lines, HOST, PORT):
    """The 003 TcpClient: many lines over one connection, until an empty one."""
    BUFSIZE = 1024
    ADDR = (HOST, PORT)
    tcpCliSock = socket(AF_INET, SOCK_STREAM)
    tcpCliSock.settimeout(5)
    tcpCliSock.connect(ADDR)
    printed = []
    for data in lines:
        if not data:
            break
        tcpCliSock.send(data.encode())
        data = tcpCliSock.recv(BUFSIZE)
        if not data:
            break
        printed.append(data.decode(encoding="utf-8"))
    tcpCliSock.close()
    return printed


def udp_client_003(lines, HOST, PORT):
    """The 003 UdpClient: a datagram per line, until an empty one."""
    BUFSIZE = 1024
    ADDR = (HOST, PORT)
    udpCliSock = socket(AF_INET, SOCK_DGRAM)
    udpCliSock.settimeout(5)
    printed = []
    for data in lines:
        if not data:
            break
        udpCliSock.sendto(data.encode(), ADDR)
        data, addr = udpCliSock.recvfrom(BUFSIZE)
        if not data:
            break
        printed.append(data.decode(encoding="utf-8"))
    udpCliSock.close()
    return printed

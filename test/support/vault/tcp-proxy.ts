import { connect, createServer, type Socket } from 'node:net'

/**
 * A loopback TCP proxy in front of a server we cannot stop ourselves (a real Vault): stop() refuses
 * connections and drops open ones, as a Vault outage would; start() listens again on the same port.
 */
export interface TcpProxy {
  readonly port: number
  stop: () => Promise<void>
  start: () => Promise<void>
  close: () => Promise<void>
}

export async function startTcpProxy (targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>()
  const track = (socket: Socket): void => {
    sockets.add(socket)
    socket.on('close', () => { sockets.delete(socket) })
  }
  const server = createServer(client => {
    track(client)
    const upstream = connect(targetPort, targetHost)
    track(upstream)
    client.pipe(upstream)
    upstream.pipe(client)
    client.on('error', () => { upstream.destroy() })
    upstream.on('error', () => { client.destroy() })
  })
  const listen = async (port: number): Promise<number> => await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject)
      const address = server.address()
      resolve(typeof address === 'object' && address !== null ? address.port : port)
    })
  })
  const stop = async (): Promise<void> => {
    if (!server.listening) return
    const closed = new Promise<void>(resolve => { server.close(() => { resolve() }) })
    for (const socket of sockets) socket.destroy()
    await closed
  }
  const port = await listen(0)
  return {
    port,
    stop,
    start: async () => { if (!server.listening) await listen(port) },
    close: stop
  }
}

import { connect, createServer, type Socket } from 'node:net'

/**
 * A loopback TCP proxy in front of a server a test cannot fault itself (a Redis it shares, a real
 * Vault), to play network faults: a silent peer (freeze), an unreachable one (refuse), and back.
 */
export interface TcpProxy {
  /** The loopback port clients connect to; it stays the same across refuse() and accept(). */
  readonly port: number
  /** Stop passing bytes either way without closing anything: a peer that went silent (a partition). */
  freeze: () => void
  /** Pass bytes again, including what was held back, in order. */
  thaw: () => void
  /** Drop every open connection and stop listening, so new ones are refused: the peer is unreachable. */
  refuse: () => Promise<void>
  /** Listen again on the same port. */
  accept: () => Promise<void>
  close: () => Promise<void>
}

/** Starts a TCP proxy on 127.0.0.1 (a free port) to `target` (host defaults to 127.0.0.1). */
export async function startTcpProxy (target: { port: number, host?: string }): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>()
  // Bytes held back while frozen, in order, with the socket they are due to.
  let held: Array<[Socket, Buffer]> = []
  let frozen = false
  const forward = (to: Socket) => (chunk: Buffer): void => {
    if (frozen) held.push([to, chunk])
    else to.write(chunk)
  }
  const server = createServer(client => {
    const upstream = connect(target.port, target.host ?? '127.0.0.1')
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    client.on('data', forward(upstream))
    upstream.on('data', forward(client))
    const end = (): void => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
  })
  const listen = async (port: number): Promise<number> => await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject)
      const address = server.address()
      resolve(typeof address === 'object' && address !== null ? address.port : port)
    })
  })
  const refuse = async (): Promise<void> => {
    const closed = server.listening ? new Promise<void>(resolve => { server.close(() => { resolve() }) }) : undefined
    for (const [client, upstream] of pairs) { client.destroy(); upstream.destroy() }
    pairs.clear()
    held = []
    await closed
  }
  const port = await listen(0)
  return {
    port,
    freeze: () => { frozen = true },
    thaw: () => {
      frozen = false
      for (const [to, chunk] of held) if (!to.destroyed) to.write(chunk)
      held = []
    },
    refuse,
    accept: async () => { if (!server.listening) await listen(port) },
    close: refuse
  }
}

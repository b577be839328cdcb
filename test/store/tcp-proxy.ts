import { connect, createServer, type Socket } from 'node:net'

export interface TcpProxy {
  readonly url: string
  /** Stop passing bytes either way without closing anything: a peer that went silent (a partition). */
  freeze: () => void
  /** Pass bytes again, including what was held back. */
  thaw: () => void
  /** Close every open connection and refuse new ones: the peer is unreachable. */
  refuse: () => void
  /** Accept connections again. */
  accept: () => void
  close: () => Promise<void>
}

/** A loopback TCP proxy to a Redis port that a test can freeze or cut, to play network faults. */
export async function startTcpProxy (targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>()
  // Bytes held back while frozen, in order, with the socket they are due to.
  let held: Array<[Socket, Buffer]> = []
  let frozen = false
  let refusing = false
  const forward = (to: Socket) => (chunk: Buffer): void => {
    if (frozen) held.push([to, chunk])
    else to.write(chunk)
  }
  const server = createServer(client => {
    if (refusing) {
      client.destroy()
      return
    }
    const upstream = connect(targetPort, '127.0.0.1')
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
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const destroyAll = (): void => {
    for (const [client, upstream] of pairs) { client.destroy(); upstream.destroy() }
    pairs.clear()
    held = []
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    freeze: () => { frozen = true },
    thaw: () => {
      frozen = false
      for (const [to, chunk] of held) if (!to.destroyed) to.write(chunk)
      held = []
    },
    refuse: () => {
      refusing = true
      destroyAll()
    },
    accept: () => { refusing = false },
    close: async () => {
      destroyAll()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }
}

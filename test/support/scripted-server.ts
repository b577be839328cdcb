import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

export interface ScriptedRequest {
  method: string
  path: string
  headers: IncomingMessage['headers']
  body: string
}

export interface ScriptedServer {
  readonly url: string
  readonly requests: ScriptedRequest[]
  close: () => Promise<void>
}

/**
 * A loopback HTTP server answering with whatever the test scripts: for what no stand-in models (bodies of
 * the wrong shape, a 500 that echoes the request, a gateway page, a server that never answers). The
 * handler gets each request with its body read; returning 'hang' leaves it open until close().
 */
export async function startScriptedServer (handler: (request: ScriptedRequest, res: ServerResponse) => void | 'hang'): Promise<ScriptedServer> {
  const requests: ScriptedRequest[] = []
  const sockets = new Set<Socket>()
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    req.on('end', () => {
      const request = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }
      requests.push(request)
      handler(request, res)
    })
  })
  server.on('connection', socket => {
    sockets.add(socket)
    socket.on('close', () => { sockets.delete(socket) })
  })
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: async () => {
      const closed = new Promise<void>(resolve => { server.close(() => { resolve() }) })
      for (const socket of sockets) socket.destroy()
      await closed
    }
  }
}

/** Writes a JSON reply with its content length, the way Vault does. */
export function sendJson (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

/**
 * A provider API stand-in for client.fetch: a real HTTP server on 127.0.0.1 that accepts a Bearer token
 * only if the Kivra stand-in issued it, it has not expired there, and the test has not revoked it. A
 * refused token is answered either as Kigo/Klavi/OAuth2 APIs do (401) or as Kivra's downstream API does
 * (HTTP 400 with body code 40015 and `x-error-code: 40015`, providers.md). Records every request.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { bearerToken, type KivraStandIn } from '../support/providers/index.js'

export interface UpstreamRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: Buffer
  token: string | undefined
}

export interface UpstreamStandIn {
  url: string
  requests: UpstreamRequest[]
  /** How a refused token is answered. */
  style: 'unauthorized' | 'kivra'
  /** Tokens this API refuses from now on (as if the provider had revoked them). */
  revoke: (token: string) => void
  /** Refuse every token, valid or not (a provider that rejects whatever it gets). */
  rejectAll: boolean
  close: () => Promise<void>
}

export async function startUpstreamStandIn (kivra: KivraStandIn): Promise<UpstreamStandIn> {
  const revoked = new Set<string>()
  const state: UpstreamStandIn = {
    url: '',
    requests: [],
    style: 'unauthorized',
    revoke: (token) => { revoked.add(token) },
    rejectAll: false,
    close: async () => {
      server.closeAllConnections()
      await new Promise(resolve => { server.close(resolve) })
    }
  }
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    req.on('end', () => {
      const token = bearerToken(req.headers.authorization)
      state.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks), token })
      const accepted = token !== undefined && !state.rejectAll && !revoked.has(token) && kivra.isTokenValid(token)
      if (accepted && req.url?.startsWith('/v1/invalid-content') === true) {
        // A Kivra error that is not about the token: the request itself is wrong.
        res.writeHead(400, { 'content-type': 'application/json', 'x-error-code': '40000' }).end(JSON.stringify({ code: 40000, short_message: 'bad request', long_message: 'the content is invalid' }))
        return
      }
      if (accepted) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, path: req.url }))
        return
      }
      if (state.style === 'kivra') {
        res.writeHead(400, { 'content-type': 'application/json', 'x-error-code': '40015' }).end(JSON.stringify({ code: 40015, short_message: 'invalid token', long_message: 'the access token is invalid' }))
        return
      }
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' }).end(JSON.stringify({ message: 'invalid token' }))
    })
  })
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return state
}

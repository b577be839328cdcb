/**
 * A provider API for the proxy tests: a real HTTP server on 127.0.0.1 behind the broker's proxy route. It
 * accepts a Bearer token only if the token stand-in issued it, it is still valid there and the test has not
 * revoked it; a refused token is answered as Kigo/Klavi/OAuth2 APIs do (401) or as Kivra's API does (HTTP
 * 400, `code` 40015 in the body and/or `x-error-code: 40015`, docs/providers.md). Every request is recorded
 * (method, raw URL, headers, body bytes), so a test can count what reached it — zero included.
 *
 * Paths (under any prefix):
 *   .../echo         200 with what it received, plus headers the proxy must pass or drop on the way back
 *   .../redirect     302 to another origin
 *   .../forbidden    403 (not a token rejection)
 *   .../kivra-other  400 with a Kivra error that is not about the token (40000)
 *   .../slow         headers after `slowMs`
 *   .../stall-body   headers and a first chunk, then nothing
 *   .../big          `bigChunks` × 1 MiB, each written only once the test's reader has received the one before
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { gzipSync } from 'node:zlib'
import { bearerToken, type ProviderStandIn } from '../support/providers/index.js'

export interface ApiRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: Buffer
  token: string | undefined
}

export type RejectionStyle = 'unauthorized' | 'kivra-body-number' | 'kivra-body-string' | 'kivra-header' | 'kivra-body-gzip'

export interface ApiStandIn {
  url: string
  requests: ApiRequest[]
  style: RejectionStyle
  revoke: (token: string) => void
  /** Refuse every token from now on, valid or not. */
  rejectAll: boolean
  slowMs: number
  readonly bigChunkBytes: number
  bigChunks: number
  /** Bytes of /big the test's reader has received; the stand-in writes the next chunk once it covers the last one. */
  bigReceived: number
  /** The most /big bytes ever written but not yet received by the reader. */
  bigMaxInFlight: number
  close: () => Promise<void>
}

function rejectToken (res: ServerResponse, style: RejectionStyle): void {
  if (style === 'unauthorized') {
    res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' }).end(JSON.stringify({ message: 'invalid token' }))
    return
  }
  const headers: Record<string, string> = { 'content-type': 'application/json', 'x-correlation-id': 'corr-1' }
  if (style === 'kivra-header') headers['x-error-code'] = '40015'
  const code = style === 'kivra-body-number' || style === 'kivra-body-gzip' ? 40015 : style === 'kivra-body-string' ? '40015' : undefined
  const body = JSON.stringify({ code, short_message: 'invalid token', long_message: 'the access token is not valid' })
  // As a server does for a caller that accepts gzip (the proxy forwards the caller's Accept-Encoding).
  if (style === 'kivra-body-gzip') {
    res.writeHead(400, { ...headers, 'content-encoding': 'gzip' }).end(gzipSync(body))
    return
  }
  res.writeHead(400, headers).end(body)
}

export async function startApiStandIn (tokens: Pick<ProviderStandIn, 'isTokenValid'>): Promise<ApiStandIn> {
  const revoked = new Set<string>()
  let notifyReceived: (() => void) | undefined
  let received = 0
  const state: ApiStandIn = {
    url: '',
    requests: [],
    style: 'unauthorized',
    revoke: (token) => { revoked.add(token) },
    rejectAll: false,
    slowMs: 2_000,
    bigChunkBytes: 1_048_576,
    bigChunks: 10,
    get bigReceived () { return received },
    set bigReceived (value: number) { received = value; notifyReceived?.() },
    bigMaxInFlight: 0,
    close: async () => {
      server.closeAllConnections()
      await new Promise(resolve => { server.close(resolve) })
    }
  }

  async function writeBig (res: ServerResponse): Promise<void> {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(state.bigChunks * state.bigChunkBytes) })
    received = 0
    state.bigMaxInFlight = 0
    for (let index = 0; index < state.bigChunks; index++) {
      const written = index * state.bigChunkBytes
      // Lockstep: chunk n+1 only once the reader has chunk n. A proxy that buffered the whole answer before
      // passing it on would never let the reader see chunk 1, and this would stop here.
      const deadline = Date.now() + 5_000
      while (received < written) {
        if (Date.now() > deadline) { res.destroy(); return }
        await new Promise<void>(resolve => { notifyReceived = resolve; setTimeout(resolve, 50) })
      }
      res.write(Buffer.alloc(state.bigChunkBytes, index % 256))
      state.bigMaxInFlight = Math.max(state.bigMaxInFlight, written + state.bigChunkBytes - received)
    }
    res.end()
  }

  function answer (res: ServerResponse, request: ApiRequest): void {
    const path = request.url.split('?')[0] as string
    const accepted = request.token !== undefined && !state.rejectAll && !revoked.has(request.token) && tokens.isTokenValid(request.token)
    if (!accepted) { rejectToken(res, state.style); return }
    if (path.endsWith('/redirect')) { res.writeHead(302, { location: 'https://elsewhere.example/login' }).end(); return }
    if (path.endsWith('/forbidden')) { res.writeHead(403, { 'content-type': 'application/json' }).end('{"message":"not yours"}'); return }
    if (path.endsWith('/kivra-other')) {
      res.writeHead(400, { 'content-type': 'application/json', 'x-error-code': '40000' }).end(JSON.stringify({ code: 40000, short_message: 'bad request' }))
      return
    }
    if (path.endsWith('/slow')) { setTimeout(() => { res.writeHead(200).end('late') }, state.slowMs); return }
    if (path.endsWith('/stall-body')) { res.writeHead(200, { 'content-type': 'text/plain' }); res.write('first;'); return }
    if (path.endsWith('/big')) { void writeBig(res); return }
    res.writeHead(201, {
      'content-type': 'application/json',
      'x-upstream': 'yes',
      'set-cookie': 'upstream-session=abc; HttpOnly',
      connection: 'keep-alive, x-upstream-hop',
      'x-upstream-hop': 'must not pass',
      'keep-alive': 'timeout=5'
    }).end(JSON.stringify({ method: request.method, url: request.url, body: request.body.toString('base64') }))
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    req.on('end', () => {
      const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks), token: bearerToken(req.headers.authorization) }
      state.requests.push(request)
      answer(res, request)
    })
  })
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return state
}

/**
 * A STAND-IN for the broker's proxy route, which the broker does not have yet (issue 15 part 1). It
 * follows that contract for what client.proxy depends on, and nothing more:
 *   `ANY /v1/credentials/{id}/proxy/{path}` — caller authentication (Bearer API key) and a deny-by-default
 *   policy (401 CB_UNAUTHENTICATED, 404 CB_CREDENTIAL_NOT_FOUND, 403 CB_FORBIDDEN); a path that normalises
 *   outside the base (`..`, `%2e%2e`, `%2f`, backslashes, `//`, NUL) → 400 CB_BAD_REQUEST, nothing sent;
 *   upstream URL = API base + `/{path}` + the query as sent; the caller's Authorization, cookies, Host and
 *   hop-by-hop headers dropped, `Authorization: Bearer <token>` added; the answer's status, headers (minus
 *   hop-by-hop and set-cookie) and body streamed back; redirects not followed; upstream unreachable →
 *   502 CB_UPSTREAM_UNAVAILABLE. All errors application/problem+json with code, status, detail, request_id.
 * Records every request it receives (raw URL as received), so tests can prove what was, or was not, sent.
 * When the real route exists, the client's proxy tests should run against it instead.
 */
import { randomUUID } from 'node:crypto'
import { createServer, request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface ProxyCredential {
  /** Where the proxy sends requests (the credential's api_base_url). */
  apiBaseUrl: string
  /** The provider token injected upstream. */
  token: string
  allowedApiKeys: readonly string[]
}

export interface ProxyRouteRequest {
  method: string
  /** Path with query exactly as received. */
  url: string
  headers: IncomingHttpHeaders
}

export interface BrokerProxyStandIn {
  url: string
  requests: ProxyRouteRequest[]
  /** Requests it forwarded upstream (URL as sent upstream). */
  forwarded: string[]
  close: () => Promise<void>
}

const hopByHop = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'])
const droppedRequestHeaders = new Set([...hopByHop, 'authorization', 'cookie', 'host'])
const droppedResponseHeaders = new Set([...hopByHop, 'set-cookie'])
const codeStatus = { CB_BAD_REQUEST: 400, CB_UNAUTHENTICATED: 401, CB_FORBIDDEN: 403, CB_CREDENTIAL_NOT_FOUND: 404, CB_ROUTE_NOT_FOUND: 404, CB_UPSTREAM_UNAVAILABLE: 502 } as const

function problem (res: ServerResponse, code: keyof typeof codeStatus, detail: string, requestId: string): void {
  const status = codeStatus[code]
  res.writeHead(status, { 'content-type': 'application/problem+json; charset=utf-8', 'x-request-id': requestId })
  res.end(JSON.stringify({ type: `urn:credential-broker:problem:${code.slice(3).toLowerCase()}`, title: code, status, detail, code, instance: '/v1/credentials', request_id: requestId }))
}

/** The escape forms, judged on the path as received (before any decoding). */
function escapes (rawPath: string): boolean {
  // eslint-disable-next-line no-control-regex -- NUL is one of the escape forms
  if (/[\\\u0000]|%00|%2f|%5c/i.test(rawPath)) return true
  const segments = rawPath.split('/')
  return segments.some((segment, index) => {
    const dots = segment.replace(/%2e/gi, '.')
    return dots === '.' || dots === '..' || (segment === '' && index !== segments.length - 1)
  })
}

export async function startBrokerProxyStandIn (credentials: Record<string, ProxyCredential>): Promise<BrokerProxyStandIn> {
  const requests: ProxyRouteRequest[] = []
  const forwarded: string[] = []
  const server: Server = createServer((req, res) => {
    const requestId = randomUUID()
    const raw = req.url ?? '/'
    requests.push({ method: req.method ?? '', url: raw, headers: req.headers })
    const match = /^\/v1\/credentials\/([^/?]+)\/proxy\/([^?]*)(\?.*)?$/.exec(raw)
    if (match === null) { req.resume(); problem(res, 'CB_ROUTE_NOT_FOUND', 'no such route', requestId); return }
    const [, id, path = '', query = ''] = match
    const key = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1]
    const credential = credentials[id as string]
    if (key === undefined) { req.resume(); problem(res, 'CB_UNAUTHENTICATED', 'no caller credentials', requestId); return }
    if (credential === undefined) { req.resume(); problem(res, 'CB_CREDENTIAL_NOT_FOUND', `no credential "${id}"`, requestId); return }
    if (!credential.allowedApiKeys.includes(key)) { req.resume(); problem(res, 'CB_FORBIDDEN', 'this caller may not use this credential', requestId); return }
    if (escapes(path)) { req.resume(); problem(res, 'CB_BAD_REQUEST', 'the path leaves the API base', requestId); return }

    const target = new URL(`${credential.apiBaseUrl.replace(/\/$/, '')}/${path}${query}`)
    const headers: OutgoingHttpHeaders = {}
    for (const [name, value] of Object.entries(req.headers)) if (!droppedRequestHeaders.has(name) && value !== undefined) headers[name] = value
    headers.authorization = `Bearer ${credential.token}`
    forwarded.push(`${target.pathname}${target.search}`)
    const upstream = httpRequest(target, { method: req.method, headers }, (answer) => {
      const back: OutgoingHttpHeaders = { 'x-request-id': requestId }
      for (const [name, value] of Object.entries(answer.headers)) if (!droppedResponseHeaders.has(name) && value !== undefined) back[name] = value
      res.writeHead(answer.statusCode ?? 502, back)
      answer.pipe(res)
    })
    upstream.on('error', () => { if (!res.headersSent) problem(res, 'CB_UPSTREAM_UNAVAILABLE', 'the upstream could not be reached', requestId) })
    req.pipe(upstream)
  })
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    forwarded,
    close: async () => {
      server.closeAllConnections()
      await new Promise(resolve => { server.close(resolve) })
    }
  }
}

/**
 * Which headers cross the proxy. Hop-by-hop headers (RFC 9110 §7.6.1: Connection and every header it
 * names, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*) belong to one connection and never
 * cross. Going up, the caller's own credentials (Authorization, Cookie) and Host are dropped too, and the
 * headers the broker sets itself (the provider credential, Content-Length of the body it sends); coming
 * back, Set-Cookie (an upstream session must not become the caller's).
 */
import type { IncomingHttpHeaders } from 'node:http'

type HeaderValue = string | string[] | undefined

const hopByHop = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

/**
 * Dropped from the caller's request: its credentials, Host (the upstream's is set by the HTTP client),
 * Content-Length (recomputed from the body sent), Expect (the body is sent whole; undici refuses it), and the
 * headers the broker sets for SIR Giving (a caller's own would be a forged signature).
 */
const droppedRequestHeaders = new Set(['authorization', 'cookie', 'host', 'content-length', 'expect', 'x-partner-key', 'x-timestamp', 'x-signature'])

const droppedResponseHeaders = new Set(['set-cookie'])

/** Header names a Connection header lists (they are hop-by-hop for this connection). */
function connectionNamed (value: HeaderValue): Set<string> {
  const names = new Set<string>()
  for (const line of value === undefined ? [] : Array.isArray(value) ? value : [value]) {
    for (const name of line.split(',')) {
      const trimmed = name.trim().toLowerCase()
      if (trimmed !== '') names.add(trimmed)
    }
  }
  return names
}

function passing (headers: Record<string, HeaderValue>, dropped: ReadonlySet<string>): Record<string, string | string[]> {
  const named = connectionNamed(headers.connection)
  const out: Record<string, string | string[]> = {}
  for (const [rawName, value] of Object.entries(headers)) {
    const name = rawName.toLowerCase()
    if (value === undefined || hopByHop.has(name) || name.startsWith('proxy-') || named.has(name) || dropped.has(name)) continue
    out[name] = value
  }
  return out
}

/** The caller's headers that go upstream (the provider credential is added by the caller of this). */
export function upstreamRequestHeaders (headers: IncomingHttpHeaders): Record<string, string | string[]> {
  return passing(headers, droppedRequestHeaders)
}

/** The upstream's answer headers that go back to the caller. */
export function callerResponseHeaders (headers: Record<string, HeaderValue>): Record<string, string | string[]> {
  return passing(headers, droppedResponseHeaders)
}

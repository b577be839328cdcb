/**
 * Path safety of the proxy: the URL a proxied request goes to stays on the API base's origin and under its
 * base path, whatever the caller wrote. The caller's path is judged as received (before any decoding) and
 * forwarded exactly so, percent-escapes included; anything an upstream or a URL parser could read as another
 * path is refused with 400 before a byte is sent:
 * - dot segments in any spelling (`.`, `..`, `%2e`, `.%2E`): they would climb out of the base path;
 * - encoded separators and NUL (`%2f`, `%5c`, `%00`…`%1f`, `%7f`): servers disagree on decoding them;
 * - backslashes (WHATWG URL parsers read them as `/`), control characters, `#`;
 * - empty segments (`//`): a path starting so is a protocol-relative URL, an absolute URL (`https://…`)
 *   always has one, and elsewhere it changes routing;
 * - characters outside RFC 3986's path characters, and malformed percent-escapes.
 * The path is appended to the base path as text and never resolved as a URL reference, so a first segment
 * with a colon (`a:b`) stays a segment under the base, as `/a:b` would be.
 * The query string is passed as sent (visible ASCII only; no `#`).
 */
import { BrokerError } from '../errors.js'

/** A path segment: RFC 3986 pchar (unreserved, sub-delims, ":", "@") and well-formed percent-escapes. */
const segmentPattern = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*$/
/** Encoded "/", "\", and control characters (NUL included). */
const encodedForbidden = /%(?:[01][0-9A-Fa-f]|7[Ff]|2[Ff]|5[Cc])/
/** A query as sent: visible ASCII without "#". */
const queryPattern = /^[\x21-\x22\x24-\x7e]*$/

/** Where a proxied request goes: the full URL, and the path with query as sent on the request line (and signed). */
export interface UpstreamTarget {
  /** Origin of the API base (`https://api.example`). */
  origin: string
  /** Base path + `/` + the caller's path, plus `?query` when one was sent: exactly what goes on the request line. */
  pathWithQuery: string
  /** The same without the query (for audit lines: a query may carry personal data). */
  path: string
}

function refuse (why: string): never {
  throw new BrokerError('CB_BAD_REQUEST', `the proxied path was refused: ${why}; nothing was sent`)
}

/**
 * Judges a caller's path (`rawPath`: what follows `/proxy/`, as received) and query (`rawQuery`: after `?`,
 * or undefined without one) and joins them to the API base. Throws CB_BAD_REQUEST for any escape form.
 */
export function upstreamTarget (apiBase: URL, rawPath: string, rawQuery: string | undefined): UpstreamTarget {
  if (encodedForbidden.test(rawPath)) refuse('it contains an encoded slash, backslash or control character')
  const segments = rawPath.split('/')
  segments.forEach((segment, index) => {
    // An empty last segment is a trailing slash ("items/"); empty elsewhere is "//".
    if (segment === '' && index !== segments.length - 1) refuse('it contains an empty segment (//)')
    if (!segmentPattern.test(segment)) refuse('it contains a character that is not allowed in a path (backslash, control character, space, "#" or a malformed %-escape)')
    const dots = segment.replace(/%2e/gi, '.')
    if (dots === '.' || dots === '..') refuse('it contains a dot segment (. or .., in any spelling)')
  })
  if (rawQuery !== undefined && !queryPattern.test(rawQuery)) refuse('the query contains a character that is not allowed')

  const basePath = apiBase.pathname.replace(/\/+$/, '')
  const path = `${basePath}/${rawPath}`
  const pathWithQuery = rawQuery === undefined ? path : `${path}?${rawQuery}`
  // Belt and braces: a URL parser must find the same origin and path, so nothing was normalised away.
  const parsed = new URL(pathWithQuery, apiBase.origin)
  if (parsed.origin !== apiBase.origin || parsed.pathname !== path || !parsed.pathname.startsWith(`${basePath}/`)) {
    refuse('it does not stay under the API base')
  }
  return { origin: apiBase.origin, pathWithQuery, path }
}

/**
 * Whether `path` (the caller's path under the API base, "/" + what followed `/proxy/`, as received) is under
 * one of `prefixes`. A prefix ending in "/" matches what is below it; one that does not matches itself and
 * what is below it ("/v1" allows "/v1" and "/v1/…", never "/v10"). Compared as written: a caller who
 * spells a character as a %-escape is refused, never let through.
 */
export function underAllowedPath (path: string, prefixes: readonly string[]): boolean {
  return prefixes.some(prefix => prefix.endsWith('/') ? path.startsWith(prefix) : path === prefix || path.startsWith(`${prefix}/`))
}

/**
 * The upstream path of a proxied request, encoded so that the URL the broker receives stays under
 * `/v1/credentials/{id}/proxy/`. The WHATWG URL parser resolves `.` and `..` segments, also when written
 * `%2e`, and reads `\` as `/` in http(s) URLs: a path holding any of those could leave the prefix before
 * the broker ever sees it. So those are refused here, with nothing sent, as the broker refuses them
 * (issue 15): dot segments in any spelling, `%2f` and `%5c` (encoded separators), backslashes, empty
 * segments (`//`), NUL and other control characters, fragments, absolute URLs, and %-escapes that are not
 * UTF-8 text (the broker's router cannot decode them).
 */
import { clientError } from './errors.js'

/** Characters kept as written in a path segment (RFC 3986 pchar without `%`, which is checked apart). */
const segmentSafe = /[A-Za-z0-9\-._~!$&'()*+,;=:@]/
/** In the query `/` and `?` are allowed too; `'` is encoded, as the URL parser would do in http(s) queries. */
const querySafe = /[A-Za-z0-9\-._~!$&()*+,;=:@/?]/

function refuse (path: string, why: string): never {
  // The path is the caller's own text, not a secret; it is cut short so a huge one does not flood a log.
  const shown = path.length > 80 ? `${path.slice(0, 80)}…` : path
  throw clientError('CB_CLIENT_INVALID_ARGUMENT', `proxy path ${JSON.stringify(shown)} refused: ${why}; nothing was sent`)
}

/** Percent-encodes what `safe` does not keep; a `%` that does not start a valid escape becomes `%25`. */
function encodePart (part: string, safe: RegExp, path: string): string {
  let out = ''
  for (let i = 0; i < part.length; i++) {
    const char = part[i] as string
    if (char === '%') {
      out += /^[0-9A-Fa-f]{2}$/.test(part.slice(i + 1, i + 3)) ? '%' : '%25'
      continue
    }
    if (safe.test(char)) {
      out += char
      continue
    }
    const codePoint = part.codePointAt(i) as number
    const whole = String.fromCodePoint(codePoint)
    try {
      out += encodeURIComponent(whole)
    } catch {
      refuse(path, 'it is not well-formed Unicode')
    }
    i += whole.length - 1
  }
  return out
}

/** `%2e` (any case) read as `.`, to recognise dot segments the way the URL parser does. */
function dotsOf (segment: string): string {
  return segment.replace(/%2e/gi, '.')
}

export type QueryInit = URLSearchParams | Record<string, string> | ReadonlyArray<[string, string]> | string

/**
 * `path` ("/v1/tenants/abc/content?limit=10") as the part of the proxy URL after `/proxy/`, plus `query`
 * appended (URLSearchParams rules). Throws CB_CLIENT_INVALID_ARGUMENT for a path that could escape.
 */
export function encodeProxyPath (path: string, query?: QueryInit): string {
  if (typeof path !== 'string') refuse(String(path), 'it is not a string')
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(path)) refuse(path, 'it is an absolute URL (give the path under the API base)')
  // Controls (NUL included) and backslashes, raw or percent-encoded; also an encoded slash, which the broker
  // would have to decode to judge and which upstreams read in different ways.
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this refuses
  if (/[\u0000-\u001f\u007f\\]/.test(path)) refuse(path, 'it contains a control character or a backslash')
  if (/%(?:[01][0-9a-f]|7f|2f|5c)/i.test(path)) refuse(path, 'it contains an encoded slash, backslash or control character')
  if (path.includes('#')) refuse(path, 'it contains a fragment (#)')

  const questionMark = path.indexOf('?')
  const rawPath = questionMark === -1 ? path : path.slice(0, questionMark)
  const rawQuery = questionMark === -1 ? '' : path.slice(questionMark + 1)
  const segments = (rawPath.startsWith('/') ? rawPath.slice(1) : rawPath).split('/')
  const encoded = segments.map((segment, index) => {
    // An empty last segment is a trailing slash ("/items/"); an empty one elsewhere is "//".
    if (segment === '' && index !== segments.length - 1) refuse(path, 'it contains an empty segment (//)')
    const dots = dotsOf(segment)
    if (dots === '.' || dots === '..') refuse(path, 'it contains a dot segment (. or ..)')
    return encodePart(segment, segmentSafe, path)
  }).join('/')
  // The broker's router decodes the path to match its routes and answers 400 when the escapes are not UTF-8.
  try {
    decodeURIComponent(encoded)
  } catch {
    refuse(path, 'it contains %-escapes that are not UTF-8 text')
  }

  let queryText = rawQuery === '' ? '' : encodePart(rawQuery, querySafe, path)
  if (query !== undefined) {
    const extra = new URLSearchParams(query as ConstructorParameters<typeof URLSearchParams>[0]).toString()
    if (extra !== '') queryText = queryText === '' ? extra : `${queryText}&${extra}`
  }
  return queryText === '' ? encoded : `${encoded}?${queryText}`
}

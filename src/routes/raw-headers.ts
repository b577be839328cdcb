/** What the token route needs of a request's headers, read from rawHeaders in one pass. */
export interface HeadersRead {
  host: boolean
  /** Content-Length or Transfer-Encoding: a body, Fastify's to judge. */
  body: boolean
  authorizations: number
  authorization: string | undefined
  /** As Node's `headers` has it: repeated ones joined with ", ". */
  callerRequestId: string | undefined
}

/** `name` is `lower` in any case (`lower` in lower case); the usual spellings compared first, without a copy. */
const named = (name: string, lower: string, usual: string): boolean => name === lower || name === usual || name.toLowerCase() === lower

/**
 * The headers the fast lane and the /v1 authentication look at, from rawHeaders (name, value, name,
 * value, …), without building Node's `headers` object. Only names of the right length are compared.
 */
export function readHeaders (rawHeaders: readonly string[]): HeadersRead {
  const read: HeadersRead = { host: false, body: false, authorizations: 0, authorization: undefined, callerRequestId: undefined }
  for (let index = 0; index < rawHeaders.length; index += 2) {
    const name = rawHeaders[index] as string
    switch (name.length) {
      case 4:
        if (named(name, 'host', 'Host')) read.host = true
        break
      case 12:
        if (named(name, 'x-request-id', 'X-Request-Id')) {
          const value = rawHeaders[index + 1] as string
          read.callerRequestId = read.callerRequestId === undefined ? value : `${read.callerRequestId}, ${value}`
        }
        break
      case 13:
        if (named(name, 'authorization', 'Authorization')) {
          read.authorizations++
          read.authorization = rawHeaders[index + 1] as string
        }
        break
      case 14:
        if (named(name, 'content-length', 'Content-Length')) read.body = true
        break
      case 17:
        if (named(name, 'transfer-encoding', 'Transfer-Encoding')) read.body = true
        break
    }
  }
  return read
}

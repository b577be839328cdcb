/**
 * "Token rejected" as a provider's API says it: a 401 (Kigo, Klavi, any OAuth2 API), or one of the
 * provider's invalid-token codes (Kivra 40015, whose HTTP status is 400: docs/providers.md § Kivra) in the
 * `x-error-code` header or the body's `code` (a string or a number).
 *
 * The body is looked at only for a 400 from a provider with such codes, and only up to `peekLimitBytes`
 * (64 KiB): an error document is small, and a larger body is passed on unread. What was read is put back
 * in front of the rest, so the caller gets the body byte for byte either way.
 */
import { Readable } from 'node:stream'
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib'
import type { ProviderDescriptor } from '../providers/types.js'
import type { UpstreamAnswer } from './forward.js'

const peekLimitBytes = 65_536

function headerText (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

/**
 * The body as sent before its Content-Encoding: callers' Accept-Encoding is forwarded, so an error document
 * may come compressed. Bounded (a small compressed body may expand); undefined for an unknown coding.
 */
function decoded (bytes: Buffer, encoding: string | undefined): Buffer | undefined {
  const coding = encoding?.trim().toLowerCase() ?? 'identity'
  const options = { maxOutputLength: 4 * peekLimitBytes }
  if (coding === 'identity' || coding === '') return bytes
  if (coding === 'gzip' || coding === 'x-gzip') return gunzipSync(bytes, options)
  if (coding === 'deflate') return inflateSync(bytes, options)
  if (coding === 'br') return brotliDecompressSync(bytes, options)
  return undefined
}

function bodyCode (raw: Buffer, encoding: string | undefined): string | undefined {
  try {
    const bytes = decoded(raw, encoding)
    if (bytes === undefined) return undefined
    const parsed: unknown = JSON.parse(bytes.toString('utf8'))
    if (parsed === null || typeof parsed !== 'object') return undefined
    const code = (parsed as { code?: unknown }).code
    return typeof code === 'string' || typeof code === 'number' ? String(code) : undefined
  } catch {
    return undefined
  }
}

/** Reads up to `limit` bytes of `body`; `rest` replays them followed by whatever was not read. */
async function peek (body: Readable, limit: number): Promise<{ bytes: Buffer, complete: boolean, rest: Readable }> {
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  const chunks: Buffer[] = []
  let size = 0
  let complete = false
  while (size <= limit) {
    const next = await iterator.next()
    if (next.done === true) { complete = true; break }
    chunks.push(next.value)
    size += next.value.length
  }
  async function * replay (): AsyncGenerator<Buffer> {
    let finished = complete
    try {
      yield * chunks
      if (finished) return
      for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) yield next.value
      finished = true
    } finally {
      // A caller that went away (or a discarded answer) stops the upstream body too.
      if (!finished) await iterator.return?.()
    }
  }
  return { bytes: Buffer.concat(chunks), complete, rest: Readable.from(replay(), { objectMode: false }) }
}

/**
 * Whether `answer` says the token it carried was rejected. May read a small 400 body: the answer to pass
 * on is returned with it (the same one, or one whose body replays what was read).
 */
export async function judgeRejection (answer: UpstreamAnswer, descriptor: ProviderDescriptor): Promise<{ rejected: boolean, answer: UpstreamAnswer }> {
  if (answer.status === 401) return { rejected: true, answer }
  const codes = descriptor.invalidTokenCodes
  if (answer.status !== 400 || codes === undefined || codes.length === 0) return { rejected: false, answer }
  const headerCode = headerText(answer.headers['x-error-code'])?.trim()
  if (headerCode !== undefined && codes.includes(headerCode)) return { rejected: true, answer }
  const declared = Number(headerText(answer.headers['content-length']))
  if (Number.isFinite(declared) && declared > peekLimitBytes) return { rejected: false, answer }
  const { bytes, complete, rest } = await peek(answer.body, peekLimitBytes)
  const code = complete ? bodyCode(bytes, headerText(answer.headers['content-encoding'])) : undefined
  return { rejected: code !== undefined && codes.includes(code), answer: { ...answer, body: rest } }
}

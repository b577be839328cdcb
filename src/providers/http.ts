/**
 * The one way adapters talk HTTP: undici `request` with a deadline on every call, JSON or form bodies,
 * bodies parsed with zod, and every failure turned into a ProviderError whose message is safe to log and
 * to show an operator (no token, no secret, no raw upstream body).
 */
import { request, type Dispatcher } from 'undici'
import type { z } from 'zod'
import { type ProviderContext } from './types.js'
import { ProviderError, type ProviderErrorKind } from '../errors.js'

/** Bodies larger than this are not token responses; refusing them bounds memory per call. */
const maxBodyBytes = 256 * 1024

/** Longest provider-supplied text (e.g. Kivra's short_message) an error message may quote. */
const maxDetailLength = 120

export interface HttpCall {
  /** Names the call in errors, e.g. "kivra mint". */
  operation: string
  method: 'GET' | 'POST'
  url: URL
  headers?: Record<string, string>
  /** Sent as application/json. */
  json?: unknown
  /** Sent as application/x-www-form-urlencoded. */
  form?: URLSearchParams
}

export interface HttpAnswer {
  status: number
  /** Raw body text: parse it, never log it or quote it in an error. */
  text: string
  /** First value of a response header (name case-insensitive), or undefined. */
  header: (name: string) => string | undefined
}

/**
 * Sends one request with a deadline of `ctx.credential.timeout_ms` (combined with `ctx.signal`) covering
 * connect, headers and body. Resolves with any HTTP status; rejects only with a transient ProviderError
 * (network failure, dropped connection, timeout, abort) or a bad-response one (oversized body).
 */
export async function sendRequest (call: HttpCall, ctx: ProviderContext): Promise<HttpAnswer> {
  const timeoutMs = ctx.credential.timeout_ms
  const deadline = AbortSignal.timeout(timeoutMs)
  const signal = ctx.signal === undefined ? deadline : AbortSignal.any([ctx.signal, deadline])
  const headers: Record<string, string> = { accept: 'application/json', ...call.headers }
  let body: string | undefined
  if (call.json !== undefined) {
    headers['content-type'] = 'application/json'
    body = JSON.stringify(call.json)
  } else if (call.form !== undefined) {
    headers['content-type'] = 'application/x-www-form-urlencoded'
    body = call.form.toString()
  }

  try {
    const response = await request(call.url, { method: call.method, headers, body, signal })
    const text = await readBody(response.body, call.operation)
    return {
      status: response.statusCode,
      text,
      header: (name) => {
        const value = response.headers[name.toLowerCase()]
        return Array.isArray(value) ? value[0] : value
      }
    }
  } catch (err) {
    if (err instanceof ProviderError) throw err
    if (deadline.aborted) {
      throw new ProviderError('transient', `${call.operation}: no answer within ${timeoutMs} ms`, { cause: err })
    }
    if (ctx.signal?.aborted === true) {
      throw new ProviderError('transient', `${call.operation}: request aborted`, { cause: err })
    }
    const code = (err as { code?: unknown }).code
    const detail = typeof code === 'string' ? ` (${code})` : ''
    throw new ProviderError('transient', `${call.operation}: network error${detail}`, { cause: err })
  }
}

async function readBody (body: Dispatcher.ResponseData['body'], operation: string): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > maxBodyBytes) {
      body.destroy()
      throw new ProviderError('bad-response', `${operation}: response body larger than ${maxBodyBytes} bytes`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/**
 * Parses a 2xx body with `schema`. Malformed JSON or a body without the required fields becomes a
 * 'bad-response' ProviderError naming only the fields that are wrong, never their values.
 */
export function parseJsonAnswer<T> (answer: HttpAnswer, schema: z.ZodType<T>, operation: string, correlationId?: string): T {
  let json: unknown
  try {
    json = JSON.parse(answer.text)
  } catch {
    throw new ProviderError('bad-response', `${operation}: HTTP ${answer.status} with a body that is not JSON`, { status: answer.status, correlationId })
  }
  const result = schema.safeParse(json)
  if (!result.success) {
    const fields = [...new Set(result.error.issues.map(issue => issue.path.length === 0 ? '(body)' : issue.path.join('.')))]
    throw new ProviderError('bad-response', `${operation}: HTTP ${answer.status} without a usable ${fields.join(', ')}`, { status: answer.status, correlationId })
  }
  return result.data
}

/** Parses an error body leniently: providers' error shapes are inferred, so anything unexpected is just "no detail". */
export function readErrorBody<T> (answer: HttpAnswer, schema: z.ZodType<T>): T | undefined {
  try {
    const result = schema.safeParse(JSON.parse(answer.text))
    return result.success ? result.data : undefined
  } catch {
    return undefined
  }
}

/**
 * Retry-After (RFC 9110 §10.2.3) as milliseconds from `nowMs`: delay-seconds or an HTTP-date. Garbage is
 * ignored (undefined); a date in the past means "now" (0).
 */
export function parseRetryAfter (value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  // Only an HTTP-date ("Sun, 06 Nov 1994 08:49:37 GMT") has letters; Date.parse alone accepts "12.5" too.
  if (!/[A-Za-z]/.test(trimmed)) return undefined
  const date = Date.parse(trimmed)
  if (Number.isNaN(date)) return undefined
  return Math.max(0, date - nowMs)
}

/**
 * How a non-2xx status is retried: 408, 425, 429 and 5xx are transient; any other 4xx is permanent (wrong
 * credentials, and configuration problems such as a bad scope or base URL that retrying cannot fix);
 * 1xx/3xx on a token endpoint are unusable answers.
 */
export function kindForStatus (status: number): ProviderErrorKind {
  if (status === 408 || status === 425 || status === 429 || status >= 500) return 'transient'
  if (status >= 400) return 'permanent'
  return 'bad-response'
}

export interface FailureDetails {
  operation: string
  /** Overrides the status-based kind (e.g. Kivra's 40104 is permanent whatever the status). */
  kind?: ProviderErrorKind | undefined
  providerCode?: string | undefined
  /** A short provider message (e.g. Kivra short_message); scrubbed and truncated here. */
  providerMessage?: string | undefined
  correlationId?: string | undefined
  /** Secret values that must never appear in the message even if the provider echoes them. */
  secret?: Readonly<Record<string, string>> | undefined
  nowMs: number
}

/** Builds the ProviderError for a non-2xx answer, with Retry-After for transient ones. */
export function failureFromAnswer (answer: HttpAnswer, details: FailureDetails): ProviderError {
  const kind = details.kind ?? kindForStatus(answer.status)
  const retryAfterMs = kind === 'transient' ? parseRetryAfter(answer.header('retry-after'), details.nowMs) : undefined
  const code = details.providerCode === undefined ? '' : `, code ${safeText(details.providerCode, details.secret)}`
  const said = details.providerMessage === undefined ? '' : `: ${safeText(details.providerMessage, details.secret)}`
  const what = kind === 'permanent' && (answer.status === 401 || answer.status === 403)
    ? 'the provider rejected the client credentials'
    : kind === 'transient' ? 'provider unavailable' : 'request refused'
  return new ProviderError(kind, `${details.operation}: ${what} (HTTP ${answer.status}${code}${said})`, {
    status: answer.status,
    providerCode: details.providerCode === undefined ? undefined : safeText(details.providerCode, details.secret),
    retryAfterMs,
    correlationId: details.correlationId
  })
}

/**
 * Makes provider-supplied text fit for an error message: one short line, with any secret value and any
 * long token-like run (a JWT, a key) replaced by "***" — a provider that echoes what we sent cannot leak it.
 */
export function safeText (text: string, secret?: Readonly<Record<string, string>>): string {
  // Control characters (newlines, ANSI escapes) would let a provider forge log lines.
  let out = Array.from(text, char => char.charCodeAt(0) < 0x20 || char.charCodeAt(0) === 0x7f ? ' ' : char).join('')
  for (const value of Object.values(secret ?? {})) {
    if (value.length >= 4) out = out.split(value).join('***')
  }
  out = out.replace(/[A-Za-z0-9._~+/=-]{32,}/g, '***').trim()
  return out.length > maxDetailLength ? `${out.slice(0, maxDetailLength)}…` : out
}

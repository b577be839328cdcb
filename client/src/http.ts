/**
 * Bounded HTTP: every call the client makes runs under a deadline, and what can go wrong on the wire
 * becomes a BrokerError with a client code. Only the global fetch (or the one given in the options).
 */
import { BrokerError, clientError } from './errors.js'

/** The subset of fetch the client uses; `globalThis.fetch` by default. */
export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>

class DeadlineReached extends Error {
  override readonly name = 'TimeoutError'
}

/** Both signals, or either alone: AbortSignal.any where the runtime has it (Node 20.3+). */
function eitherSignal (a: AbortSignal, b: AbortSignal): AbortSignal {
  if (typeof AbortSignal.any === 'function') return AbortSignal.any([a, b])
  const controller = new AbortController()
  const forward = (source: AbortSignal) => () => { controller.abort(source.reason) }
  a.addEventListener('abort', forward(a), { once: true })
  b.addEventListener('abort', forward(b), { once: true })
  return controller.signal
}

/** "connection refused (ECONNREFUSED)" from undici's `TypeError: fetch failed` and its cause; no URL, no header. */
function describeFailure (err: unknown): string {
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause
  const code = typeof cause?.code === 'string' ? ` (${cause.code})` : ''
  return `the connection failed${code}`
}

/**
 * Runs `run` with a signal that aborts after `timeoutMs`, or when the caller's own signal aborts. What
 * `run` awaits is inside the deadline; whatever it hands back (a body still streaming) is not: the timer
 * is cleared when `run` settles. A deadline becomes CB_CLIENT_TIMEOUT, a transport failure
 * CB_CLIENT_NETWORK, and a caller's abort is rethrown with the caller's own reason, as fetch does.
 */
export async function bounded<T> (what: string, timeoutMs: number, callerSignal: AbortSignal | null | undefined, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  if (callerSignal?.aborted === true) throw callerSignal.reason
  const deadline = new AbortController()
  const timer = setTimeout(() => { deadline.abort(new DeadlineReached(`no answer within ${timeoutMs} ms`)) }, timeoutMs)
  const signal = callerSignal == null ? deadline.signal : eitherSignal(callerSignal, deadline.signal)
  try {
    return await run(signal)
  } catch (err) {
    if (deadline.signal.aborted) throw clientError('CB_CLIENT_TIMEOUT', `${what}: no answer within ${timeoutMs} ms`)
    // Read again: TypeScript narrowed `aborted` at the check above, but the caller may have aborted since.
    if (callerSignal != null && (callerSignal as AbortSignal).aborted) throw callerSignal.reason
    if (err instanceof BrokerError) throw err
    throw clientError('CB_CLIENT_NETWORK', `${what}: ${describeFailure(err)}`, { cause: err })
  } finally {
    clearTimeout(timer)
  }
}

/** `Retry-After` in seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3); undefined when absent or unreadable. */
export function parseRetryAfter (value: string | null, nowMs: number = Date.now()): number | undefined {
  if (value === null) return undefined
  const text = value.trim()
  if (/^\d{1,9}$/.test(text)) return Number(text)
  const at = Date.parse(text)
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - nowMs) / 1000))
}

/** The media type without parameters, lower case. */
export function mediaType (response: Response): string {
  return (response.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
}

/** Reads at most `limit` bytes of a body as UTF-8; undefined (and the rest cancelled) when it is longer. */
export async function readTextUpTo (response: Response, limit: number): Promise<string | undefined> {
  const body = response.body
  if (body === null) return ''
  const reader = body.getReader()
  const chunks: Uint8Array[] = []
  let length = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    length += value.byteLength
    if (length > limit) {
      // Not awaited: on a clone (a tee branch) cancel settles only when the other branch is done as well.
      reader.cancel().catch(() => {})
      return undefined
    }
    chunks.push(value)
  }
  const bytes = new Uint8Array(length)
  let offset = 0
  for (const chunk of chunks) { bytes.set(chunk, offset); offset += chunk.byteLength }
  return new TextDecoder().decode(bytes)
}

interface ProblemBody {
  code?: unknown
  status?: unknown
  detail?: unknown
  request_id?: unknown
  retry_after?: unknown
  errors?: unknown
}

/** The broker's answers are small; anything bigger is not one of them. */
const brokerBodyLimit = 1_048_576

/**
 * A BrokerError from a broker answer that is not a success: the problem document's code, detail, request
 * id and Retry-After. An answer that is not a problem document (an ingress' HTML 502) is CB_CLIENT_BAD_RESPONSE
 * with the status seen.
 */
export async function problemError (response: Response, what: string): Promise<BrokerError> {
  const headerRequestId = response.headers.get('x-request-id') ?? undefined
  const text = await readTextUpTo(response, brokerBodyLimit)
  let problem: ProblemBody | undefined
  try {
    const parsed: unknown = text === undefined ? undefined : JSON.parse(text)
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) problem = parsed as ProblemBody
  } catch {
    problem = undefined
  }
  if (problem === undefined || typeof problem.code !== 'string') {
    return clientError('CB_CLIENT_BAD_RESPONSE', `${what}: answered ${response.status} without a problem document`, { status: response.status, requestId: headerRequestId })
  }
  return brokerProblem(problem, response, what)
}

/** A BrokerError from a parsed problem document (also used by proxy answers). */
export function brokerProblem (problem: ProblemBody, response: Response, what: string): BrokerError {
  const code = problem.code as string
  const detail = typeof problem.detail === 'string' ? problem.detail : undefined
  const requestId = typeof problem.request_id === 'string' ? problem.request_id : response.headers.get('x-request-id') ?? undefined
  const retryAfter = parseRetryAfter(response.headers.get('retry-after')) ??
    (typeof problem.retry_after === 'number' && Number.isFinite(problem.retry_after) ? problem.retry_after : undefined)
  const errors = Array.isArray(problem.errors)
    ? problem.errors.filter((item): item is { path: string, message: string } => typeof item?.path === 'string' && typeof item?.message === 'string')
    : undefined
  return new BrokerError(`${what}: ${response.status} ${code}${detail === undefined ? '' : `: ${detail}`}`, {
    code,
    status: response.status,
    detail,
    retryAfter,
    requestId,
    errors
  })
}

export type { ProblemBody }

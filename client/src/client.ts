/**
 * createBrokerClient: the caller's side of credential-broker's API (README.md "API" in the broker repo).
 * Tokens are cached and shared, provider rejections are reported and retried once, proxied requests and
 * signatures go through the broker. Zero dependencies: the global fetch and Web Crypto.
 */
import { BrokerError, clientError } from './errors.js'
import { bounded, brokerProblem, mediaType, problemError, readTextUpTo, type FetchLike, type ProblemBody } from './http.js'
import { encodeProxyPath, type QueryInit } from './proxy-path.js'
import { createTokenCache, type CachedToken } from './token-cache.js'

/** Decides whether an upstream answer means "this token was rejected" (a 401 always does). */
export type RejectionCheck = (response: Response) => boolean | Promise<boolean>

interface CommonOptions {
  /** The broker's base URL, e.g. `https://credential-broker.platform.svc:8080` (a path prefix is kept). */
  baseUrl: string | URL
  /** Bound on every HTTP call: a broker call until its answer is read; fetch/proxy until the answer's headers. Default 20 000 ms. */
  timeoutMs?: number
  /** minTtl (seconds) when a call names none; the broker's own default is 60. Default 60. */
  defaultMinTtl?: number
  /** Longest `Retry-After` (seconds) of a broker 503 that getToken waits out before its one retry. Default 5. */
  maxRetryWaitSeconds?: number
  /** The default rejection check of `fetch` (e.g. Kivra's 40015); a call's own `isRejected` wins. */
  isRejected?: RejectionCheck
  /** Replaces the global fetch (e.g. one bound to an undici Agent). */
  fetch?: FetchLike
}

/** Authenticates with an API key issued to this caller. */
export interface ApiKeyOptions extends CommonOptions {
  apiKey: string
  token?: never
}

/**
 * Authenticates with a JWT the broker trusts, obtained on every broker call; e.g. a projected Kubernetes
 * service account token: `token: () => readFile('/var/run/secrets/tokens/broker', 'utf8')`.
 */
export interface TokenFunctionOptions extends CommonOptions {
  token: () => string | Promise<string>
  apiKey?: never
}

export type BrokerClientOptions = ApiKeyOptions | TokenFunctionOptions

export interface GetTokenOptions {
  /** Seconds the token must still be valid for; 0 to the credential's lifetime. Default `defaultMinTtl` (60). */
  minTtl?: number
}

/** A provider token. */
export interface Token {
  accessToken: string
  /** As the provider names it, e.g. "bearer". */
  tokenType: string
  /**
   * When the token expires, on this host's clock: the moment the request was sent plus the broker's
   * `expires_in`. Never later than the real expiry, whatever the difference between the two clocks.
   */
  expiresAt: Date
  /** Seconds left now (for a token fresh from the broker: the broker's `expires_in`, at least minTtl). */
  expiresIn: number
  scope?: string
}

export interface BrokerFetchInit extends RequestInit {
  /** minTtl of the token this request carries. */
  minTtl?: number
  /** Whether an answer other than 401 is a token rejection; gets a clone of the response, read it freely. */
  isRejected?: RejectionCheck
}

export interface ProxyInit extends RequestInit {
  /** Query parameters appended to the ones in `path` (URLSearchParams rules). */
  query?: QueryInit
}

export interface SignRequest {
  /** The HTTP method of the request to be signed ("post" is sent as "POST"). */
  method: string
  /** Path with query string, exactly as it will be sent ("/v1/partner/donations?campaign=42"). */
  path: string
  /** The exact body bytes to be sent; a string is hashed as UTF-8. None or "" for an empty body. */
  body?: string | Uint8Array | ArrayBuffer
}

/** Headers as a receiver has them: a WHATWG Headers, or Node's `req.headers`. */
export type WebhookHeaders = Headers | Record<string, string | readonly string[] | undefined>

export interface WebhookDelivery {
  headers: WebhookHeaders
  /** The raw body exactly as received (bytes, or a string when it was received as UTF-8 text). */
  body: string | Uint8Array | ArrayBuffer
}

export interface WebhookVerification {
  valid: boolean
  reason?: 'missing_signature' | 'missing_timestamp' | 'stale_timestamp' | 'bad_signature' | 'no_webhook_secret' | (string & {})
}

export interface BrokerClient {
  /** A provider token with at least `minTtl` seconds left: from memory, or from one shared broker request. */
  getToken: (credentialId: string, options?: GetTokenOptions) => Promise<Token>
  /**
   * `fetch` with `Authorization: Bearer <token>`. On a 401 (or `isRejected`) the token is reported to the
   * broker and the request is sent once more with the replacement; the second answer is returned as it is.
   */
  fetch: (credentialId: string, url: string | URL, init?: BrokerFetchInit) => Promise<Response>
  /** A request through the broker's proxy route: `ANY /v1/credentials/{id}/proxy/{path}`. */
  proxy: (credentialId: string, path: string, init?: ProxyInit) => Promise<Response>
  /** SIR Giving signature headers (`X-Partner-Key`, `X-Timestamp`, `X-Signature`) for one request. */
  sign: (credentialId: string, request: SignRequest) => Promise<Record<string, string>>
  /** Verifies a provider webhook delivery with the secret the broker holds. */
  verifyWebhook: (credentialId: string, delivery: WebhookDelivery) => Promise<WebhookVerification>
}

const defaultTimeoutMs = 20_000
const defaultMinTtlSeconds = 60
const defaultMaxRetryWaitSeconds = 5
/** The broker's credential id rule; anything else could change the URL's path. */
const credentialIdPattern = /^[a-z0-9][a-z0-9._-]{0,63}$/
/** Visible ASCII only: a header value with a line break or space would be refused or, worse, split. */
const headerTokenPattern = /^[\x21-\x7e]+$/
/** Headers never needed to verify a signature, and private to the receiver. */
const privateWebhookHeaders = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie'])
/** Longest problem document looked at to tell a broker failure from an upstream answer on the proxy. */
const proxyProblemLimit = 65_536

function invalid (message: string): BrokerError {
  return clientError('CB_CLIENT_INVALID_ARGUMENT', message)
}

function checkCredentialId (credentialId: unknown): string {
  if (typeof credentialId !== 'string' || !credentialIdPattern.test(credentialId)) {
    throw invalid(`credential id ${JSON.stringify(String(credentialId)).slice(0, 80)} is not a valid id (lower-case letters, digits, ".", "_", "-"; at most 64)`)
  }
  return credentialId
}

function checkSeconds (name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw invalid(`${name} must be a whole number of seconds, 0 or more`)
  return value
}

/** True for bodies that can be read once only (a ReadableStream, a Node stream, an async iterable). */
function isStreamBody (body: RequestInit['body']): boolean {
  return typeof body === 'object' && body !== null && (
    (typeof ReadableStream !== 'undefined' && body instanceof ReadableStream) || Symbol.asyncIterator in body
  )
}

function toBytes (body: string | Uint8Array | ArrayBuffer | undefined): Uint8Array {
  if (body === undefined) return new Uint8Array(0)
  if (typeof body === 'string') return new TextEncoder().encode(body)
  if (body instanceof ArrayBuffer) return new Uint8Array(body)
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength)
  throw invalid('a body must be a string, a Uint8Array or an ArrayBuffer')
}

/**
 * Drops an answer's body. Not awaited: after a clone() the body is a tee branch, whose cancel settles
 * only once the other branch is done as well.
 */
function discard (response: Response): void {
  if (response.body !== null && !response.bodyUsed) response.body.cancel().catch(() => {})
}

async function sha256Hex (bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes))
  let hex = ''
  for (const byte of digest) hex += byte.toString(16).padStart(2, '0')
  return hex
}

function base64 (bytes: Uint8Array): string {
  let binary = ''
  // In slices: String.fromCharCode with a million arguments would overflow the stack.
  for (let offset = 0; offset < bytes.byteLength; offset += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(offset, offset + 0x8000))
  }
  return btoa(binary)
}

function webhookHeaders (headers: WebhookHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  const add = (name: string, value: string | readonly string[] | undefined): void => {
    const lower = name.toLowerCase()
    if (value === undefined || privateWebhookHeaders.has(lower)) return
    out[lower] = typeof value === 'string' ? value : [...value]
  }
  if (typeof Headers !== 'undefined' && headers instanceof Headers) headers.forEach((value, name) => { add(name, value) })
  else for (const [name, value] of Object.entries(headers)) add(name, value)
  return out
}

/** Creates a client. Options are checked at once: a bad one throws CB_CLIENT_INVALID_ARGUMENT here. */
export function createBrokerClient (options: BrokerClientOptions): BrokerClient {
  let base: URL
  try {
    base = new URL(String(options.baseUrl))
  } catch {
    throw invalid('baseUrl must be an absolute http(s) URL')
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw invalid('baseUrl must be an http(s) URL')
  if (base.search !== '' || base.hash !== '' || base.username !== '' || base.password !== '') throw invalid('baseUrl must not carry a query, a fragment or credentials')
  const basePath = base.pathname.replace(/\/+$/, '')
  const baseUrl = `${base.origin}${basePath}`

  const hasKey = options.apiKey !== undefined
  const hasTokenFunction = options.token !== undefined
  if (hasKey === hasTokenFunction) throw invalid('give exactly one of apiKey and token')
  if (hasKey && (typeof options.apiKey !== 'string' || !headerTokenPattern.test(options.apiKey))) throw invalid('apiKey must be a non-empty string of visible ASCII characters')
  if (hasTokenFunction && typeof options.token !== 'function') throw invalid('token must be a function returning the caller token')

  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw invalid('timeoutMs must be a positive number')
  const defaultMinTtl = checkSeconds('defaultMinTtl', options.defaultMinTtl ?? defaultMinTtlSeconds)
  const maxRetryWaitSeconds = options.maxRetryWaitSeconds ?? defaultMaxRetryWaitSeconds
  if (typeof maxRetryWaitSeconds !== 'number' || !(maxRetryWaitSeconds >= 0)) throw invalid('maxRetryWaitSeconds must be 0 or more')
  const fetchImpl: FetchLike = options.fetch ?? (async (input, init) => await globalThis.fetch(input, init))
  const now = (): number => Date.now()

  async function callerAuthorization (): Promise<string> {
    if (options.apiKey !== undefined) return `Bearer ${options.apiKey}`
    let token: unknown
    try {
      token = await (options.token as () => string | Promise<string>)()
    } catch (err) {
      throw clientError('CB_CLIENT_CALLER_TOKEN', 'the token function threw', { cause: err })
    }
    // A token read from a file often ends with a newline.
    const text = typeof token === 'string' ? token.trim() : ''
    if (!headerTokenPattern.test(text)) throw clientError('CB_CLIENT_CALLER_TOKEN', 'the token function returned no usable token (expected a non-empty string of visible ASCII characters)')
    return `Bearer ${text}`
  }

  /** One broker call with a JSON answer, read within the deadline. Redirects are not followed: the caller token stays with the broker. */
  async function brokerJson (what: string, method: 'GET' | 'POST', path: string, payload?: unknown): Promise<Record<string, unknown>> {
    const authorization = await callerAuthorization()
    return await bounded(what, timeoutMs, undefined, async (signal) => {
      const headers: Record<string, string> = { authorization, accept: 'application/json, application/problem+json' }
      if (payload !== undefined) headers['content-type'] = 'application/json'
      const response = await fetchImpl(`${baseUrl}${path}`, {
        method,
        headers,
        body: payload === undefined ? undefined : JSON.stringify(payload),
        redirect: 'manual',
        signal
      })
      if (!response.ok) throw await problemError(response, what)
      const requestId = response.headers.get('x-request-id') ?? undefined
      const text = await readTextUpTo(response, 1_048_576)
      try {
        const parsed: unknown = text === undefined ? undefined : JSON.parse(text)
        if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>
      } catch {
        // Not JSON: answered below like any other undocumented body.
      }
      throw clientError('CB_CLIENT_BAD_RESPONSE', `${what}: answered ${response.status} with a body that is not a JSON object`, { status: response.status, requestId })
    })
  }

  /** A token answer (`{ access_token, token_type, expires_at, expires_in, scope }`) as the cache holds it. */
  function fromAnswer (answer: Record<string, unknown>, sentAtMs: number, what: string): CachedToken {
    const { access_token: accessToken, token_type: tokenType, expires_in: expiresIn, scope } = answer
    if (typeof accessToken !== 'string' || accessToken === '' || typeof tokenType !== 'string' ||
        typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn < 0 || (scope != null && typeof scope !== 'string')) {
      throw clientError('CB_CLIENT_BAD_RESPONSE', `${what}: the token answer lacks access_token, token_type or expires_in`)
    }
    // expires_in counted from when the request left: earlier than the real expiry by the round trip at
    // most, and free of any difference between this host's clock and the broker's.
    return { accessToken, tokenType, expiresAtMs: sentAtMs + expiresIn * 1000, answeredExpiresIn: expiresIn, scope: typeof scope === 'string' ? scope : undefined }
  }

  const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

  async function requestToken (credentialId: string, minTtl: number): Promise<CachedToken> {
    const what = `getToken("${credentialId}")`
    for (let attempt = 1; ; attempt++) {
      const sentAt = now()
      try {
        return fromAnswer(await brokerJson(what, 'GET', `/v1/credentials/${credentialId}/token?min_ttl=${minTtl}`), sentAt, what)
      } catch (err) {
        // A 503 with Retry-After: the broker expects a token within that time (a refresh finishing, a
        // provider backoff ending). Waited out once, and only when short enough for a caller to wait.
        const retryable = attempt === 1 && err instanceof BrokerError && err.status === 503 &&
          err.retryAfter !== undefined && err.retryAfter <= maxRetryWaitSeconds
        if (!retryable) throw err
        await sleep(err.retryAfter * 1000)
      }
    }
  }

  async function reportRejection (credentialId: string, rejected: string): Promise<CachedToken> {
    const what = `fetch("${credentialId}"): reporting a rejected token`
    const sentAt = now()
    return fromAnswer(await brokerJson(what, 'POST', `/v1/credentials/${credentialId}/token/rejections`, { access_token: rejected }), sentAt, what)
  }

  const cache = createTokenCache({ request: requestToken, report: reportRejection, now })

  function view (token: CachedToken, fresh: boolean): Token {
    const result: Token = {
      accessToken: token.accessToken,
      tokenType: token.tokenType,
      expiresAt: new Date(token.expiresAtMs),
      expiresIn: fresh ? token.answeredExpiresIn : Math.max(0, Math.floor((token.expiresAtMs - now()) / 1000))
    }
    if (token.scope !== undefined) result.scope = token.scope
    return result
  }

  async function getCached (credentialId: string, minTtl: number | undefined): Promise<CachedToken> {
    return await cache.get(checkCredentialId(credentialId), checkSeconds('minTtl', minTtl ?? defaultMinTtl))
  }

  async function getToken (credentialId: string, getOptions: GetTokenOptions = {}): Promise<Token> {
    const started = now()
    const token = await getCached(credentialId, getOptions.minTtl)
    // A token that arrived during this call shows the broker's expires_in; a cached one its time left.
    return view(token, token.expiresAtMs - token.answeredExpiresIn * 1000 >= started)
  }

  async function sendWithToken (target: URL, init: RequestInit, accessToken: string): Promise<Response> {
    const headers = new Headers(init.headers)
    headers.set('authorization', `Bearer ${accessToken}`)
    return await bounded(`fetch ${(init.method ?? 'GET').toUpperCase()} ${target.origin}`, timeoutMs, init.signal, async (signal) =>
      await fetchImpl(target, { ...init, headers, signal }))
  }

  async function isRejection (response: Response, check: RejectionCheck | undefined): Promise<boolean> {
    if (response.status === 401) return true
    if (check === undefined) return false
    const copy = response.clone()
    try {
      return await check(copy)
    } finally {
      // The check may not read the copy; dropping it keeps the tee from buffering the caller's body twice.
      discard(copy)
    }
  }

  async function brokerFetch (credentialId: string, url: string | URL, init: BrokerFetchInit = {}): Promise<Response> {
    const { minTtl, isRejected, ...requestInit } = init
    let target: URL
    try {
      target = new URL(url)
    } catch {
      throw invalid('fetch needs an absolute URL')
    }
    const id = checkCredentialId(credentialId)
    const minTtlSeconds = checkSeconds('minTtl', minTtl ?? defaultMinTtl)
    const first = await cache.get(id, minTtlSeconds)
    const response = await sendWithToken(target, requestInit, first.accessToken)
    if (!(await isRejection(response, isRejected ?? options.isRejected))) return response

    let replacement: CachedToken
    try {
      replacement = await cache.replaceRejected(id, first.accessToken, minTtlSeconds)
    } catch (err) {
      discard(response)
      throw err
    }
    // A stream body was consumed by the first attempt and cannot be sent again: the rejection is reported
    // (the next call carries the new token), and this answer goes back as it is.
    if (isStreamBody(requestInit.body) || replacement.accessToken === first.accessToken) return response
    discard(response)
    return await sendWithToken(target, requestInit, replacement.accessToken)
  }

  async function proxy (credentialId: string, path: string, init: ProxyInit = {}): Promise<Response> {
    const { query, ...requestInit } = init
    const id = checkCredentialId(credentialId)
    const prefix = `${basePath}/v1/credentials/${id}/proxy/`
    const suffix = encodeProxyPath(path, query)
    const target = new URL(`${base.origin}${prefix}${suffix}`)
    // Belt and braces: the URL parser must not have moved anything (no normalisation took place).
    if (target.origin !== base.origin || `${target.pathname}${target.search}` !== `${prefix}${suffix}`) {
      throw invalid(`proxy path ${JSON.stringify(path.slice(0, 80))} refused: it does not stay under the proxy prefix; nothing was sent`)
    }
    const headers = new Headers(requestInit.headers)
    // The broker authenticates this caller with it and drops it; the provider's credential is added there.
    headers.set('authorization', await callerAuthorization())
    const what = `proxy("${id}") ${(requestInit.method ?? 'GET').toUpperCase()}`
    return await bounded(what, timeoutMs, requestInit.signal, async (signal) => {
      // The broker does not follow upstream redirects; following one here would leave the broker.
      const response = await fetchImpl(target, { ...requestInit, headers, signal, redirect: 'manual' })
      if (response.status < 400 || mediaType(response) !== 'application/problem+json') return response
      // The broker's own failures (403, 502 unreachable, 504 timeout, 503 no token) are problem documents
      // with a CB_ code; an upstream's problem document goes back to the caller untouched.
      const text = await readTextUpTo(response.clone(), proxyProblemLimit)
      let problem: ProblemBody | undefined
      try {
        problem = text === undefined ? undefined : JSON.parse(text) as ProblemBody
      } catch {
        problem = undefined
      }
      if (typeof problem?.code !== 'string' || !/^CB_[A-Z_]+$/.test(problem.code)) return response
      discard(response)
      throw brokerProblem(problem, response, what)
    })
  }

  async function sign (credentialId: string, request: SignRequest): Promise<Record<string, string>> {
    const id = checkCredentialId(credentialId)
    if (typeof request?.method !== 'string' || typeof request.path !== 'string') throw invalid('sign needs a method and a path')
    const what = `sign("${id}")`
    const bodySha256 = await sha256Hex(toBytes(request.body))
    const answer = await brokerJson(what, 'POST', `/v1/credentials/${id}/signatures`, { method: request.method.toUpperCase(), path: request.path, body_sha256: bodySha256 })
    const signed = answer.headers
    if (signed === null || typeof signed !== 'object' || Object.values(signed).some(value => typeof value !== 'string')) {
      throw clientError('CB_CLIENT_BAD_RESPONSE', `${what}: the answer has no headers object`)
    }
    return { ...(signed as Record<string, string>) }
  }

  async function verifyWebhook (credentialId: string, delivery: WebhookDelivery): Promise<WebhookVerification> {
    const id = checkCredentialId(credentialId)
    if (delivery?.headers == null) throw invalid('verifyWebhook needs the headers and the raw body')
    const what = `verifyWebhook("${id}")`
    const body = delivery.body
    // Text goes as it is; bytes as base64, so that a body that is not UTF-8 arrives unchanged.
    const answer = await brokerJson(what, 'POST', `/v1/credentials/${id}/webhook-verifications`, {
      headers: webhookHeaders(delivery.headers),
      body: typeof body === 'string' ? body : base64(toBytes(body)),
      body_encoding: typeof body === 'string' ? 'utf8' : 'base64'
    })
    if (typeof answer.valid !== 'boolean') throw clientError('CB_CLIENT_BAD_RESPONSE', `${what}: the answer has no "valid"`)
    return typeof answer.reason === 'string' ? { valid: answer.valid, reason: answer.reason } : { valid: answer.valid }
  }

  return { getToken, fetch: brokerFetch, proxy, sign, verifyWebhook }
}

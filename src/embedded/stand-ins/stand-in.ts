/**
 * The shared base of the provider stand-ins: a real HTTP server on 127.0.0.1 (port 0) that follows one
 * provider's documented contract (docs/providers.md), records every request, counts what it issued, and injects
 * faults on demand. Each provider file only describes its routes, its request checks and its bodies.
 *
 * Typical use:
 *   const kivra = await startKivraStandIn({ now: () => clock })
 *   kivra.setFault({ kind: 'rate-limit', retryAfter: '7' }, { times: 1 })
 *   ... kivra.mints, kivra.requests, kivra.tokenInfo(token) ...
 *   await kivra.close()
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** A fault the next matching request(s) get instead of (or before) the documented answer. */
export type Fault =
  /** Wait this long, then answer normally (use with a short `timeout_ms` to provoke client timeouts). */
  | { kind: 'latency', ms: number }
  /** A 5xx with the provider's error body (default 503). */
  | { kind: 'server-error', status?: number }
  /** 429 with the provider's error body and `Retry-After` (seconds or an HTTP date; default "7"). */
  | { kind: 'rate-limit', retryAfter?: string }
  /** The provider's wrong-credentials answer even for the right secret; `code` overrides the provider code (Kivra 40103). */
  | { kind: 'wrong-credentials', code?: string | number }
  /** Read the request, then destroy the socket without answering. */
  | { kind: 'drop' }
  /** A 2xx token answer without its lifetime field (Kigo: a JWT without `exp`). */
  | { kind: 'missing-lifetime' }
  /** A 2xx token answer whose lifetime field is `value` (default "soon"). */
  | { kind: 'malformed-lifetime', value?: unknown }
  /** A 2xx answer without the token field. */
  | { kind: 'missing-token' }
  /** A 2xx answer with `Content-Type: application/json` that is not JSON. */
  | { kind: 'malformed-json' }

export interface FaultOptions {
  /** Only requests to this endpoint ("mint", "refresh", "partner"); default every endpoint. */
  endpoint?: string
  /** How many matching requests get the fault; default all until `clearFaults()`. */
  times?: number
}

export interface RecordedRequest {
  endpoint: string
  method: string
  /** Path with query string, as received. */
  path: string
  headers: IncomingHttpHeaders
  body: string
  /** Stand-in clock time (epoch ms) when the request arrived. */
  at: number
}

export interface StandInOptions {
  /** The stand-in's clock (epoch ms): token expiry, Retry-After dates, timestamp checks. Default Date.now. */
  now?: () => number
  /** Lifetime of issued tokens in seconds; default the provider's documented one. */
  lifetimeSeconds?: number
  /** Port; default a free one (0). The stand-ins entry point (main.ts) uses the fixed ports 4010-4013. */
  port?: number
  /** Address to listen on; default 127.0.0.1. Only the compose stand-ins container listens wider (0.0.0.0). */
  host?: string
}

/** What a provider file's handler sees. */
export interface StandInRequest {
  endpoint: string
  method: string
  url: URL
  /** Path with query string exactly as received (what SIR Giving signatures cover). */
  rawPath: string
  headers: IncomingHttpHeaders
  body: string
  /** The active fault for this request, if any (latency and transport faults are handled by the base). */
  fault: Fault | undefined
}

export interface StandInReply {
  status: number
  headers?: Record<string, string>
  /** An object is sent as JSON; a string is sent verbatim with Content-Type application/json. */
  body?: unknown
}

export interface IssuedToken {
  /** Which endpoint issued it ("mint", "refresh", or a provider's own, e.g. Kigo's "accounts"). */
  endpoint: string
  issuedAt: number
  expiresAt: number
  scope?: string | undefined
}

interface ActiveFault { fault: Fault, endpoint: string | undefined, remaining: number }

/** The base class; see the provider files for the documented behaviour of each. */
export abstract class ProviderStandIn {
  /** e.g. "kivra". */
  abstract readonly name: string
  /** Every request received, oldest first (includes secrets: for assertions only, never print it). */
  readonly requests: RecordedRequest[] = []
  /** Tokens issued, by value. */
  protected readonly issued = new Map<string, IssuedToken>()
  protected readonly now: () => number
  /** Lifetime of the next tokens issued, in seconds. */
  lifetimeSeconds: number

  private readonly port: number
  private readonly host: string
  private server: Server | undefined
  private address: AddressInfo | undefined
  private faults: ActiveFault[] = []
  private readonly attemptCounts = new Map<string, number>()
  private readonly successCounts = new Map<string, number>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly jwtKey = randomBytes(32)

  protected constructor (options: StandInOptions, defaultLifetimeSeconds: number) {
    this.now = options.now ?? Date.now
    this.lifetimeSeconds = options.lifetimeSeconds ?? defaultLifetimeSeconds
    this.port = options.port ?? 0
    this.host = options.host ?? '127.0.0.1'
  }

  /** Maps a request to an endpoint name, or undefined for 404. */
  protected abstract route (method: string, pathname: string): string | undefined
  /** Answers a request for an endpoint (fault is set for body-shaping faults). */
  protected abstract handle (request: StandInRequest): StandInReply
  /** The provider's error answer for a status, e.g. Kivra's `{ code, short_message, long_message }`. */
  protected abstract errorReply (status: number, message: string, code?: string | number): StandInReply
  /** The provider's wrong-credentials answer to a request. */
  protected abstract wrongCredentialsReply (request: StandInRequest, code?: string | number): StandInReply
  /** Headers on every response (Kivra's x-correlation-id). */
  protected commonHeaders (): Record<string, string> { return {} }

  /** Starts listening (127.0.0.1 and a free port unless the options say otherwise). */
  async start (): Promise<this> {
    if (this.server !== undefined) return this
    const server = createServer((req, res) => { this.onRequest(req, res) })
    // Node's default keep-alive (5 s) outlives short tests; close() ends idle connections anyway.
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, this.host, () => { server.off('error', reject); resolve() })
    })
    this.server = server
    this.address = server.address() as AddressInfo
    return this
  }

  /** Stops listening, ends every connection and cancels delayed answers. Safe to call twice. */
  async close (): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    const server = this.server
    this.server = undefined
    if (server === undefined) return
    server.closeAllConnections()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  }

  /** `http://127.0.0.1:<port>`, usable as a credential's `base_url` on this machine. */
  get url (): string {
    if (this.address === undefined) throw new Error(`${this.name} stand-in is not started`)
    return `http://127.0.0.1:${this.address.port}`
  }

  /** The port it listens on. */
  get listeningPort (): number {
    if (this.address === undefined) throw new Error(`${this.name} stand-in is not started`)
    return this.address.port
  }

  /**
   * Injects a fault for matching requests (replacing the faults for the same endpoint). Faults are
   * checked after the request is read and recorded, so a dropped request still counts as an attempt.
   */
  setFault (fault: Fault, options: FaultOptions = {}): void {
    this.faults = this.faults.filter(active => active.endpoint !== options.endpoint)
    this.faults.push({ fault, endpoint: options.endpoint, remaining: options.times ?? Number.POSITIVE_INFINITY })
  }

  /** Removes every fault: the stand-in answers as documented again. */
  clearFaults (): void {
    this.faults = []
  }

  /** Requests received on an endpoint, whatever the answer. */
  attempts (endpoint: string): number {
    return this.attemptCounts.get(endpoint) ?? 0
  }

  /** Successful answers on an endpoint (tokens issued for "mint"/"refresh", accepted calls for "partner"). */
  successes (endpoint: string): number {
    return this.successCounts.get(endpoint) ?? 0
  }

  /** Tokens issued by the mint endpoint. */
  get mints (): number { return this.successes('mint') }
  /** Requests to the mint endpoint, including failed and faulted ones. */
  get mintAttempts (): number { return this.attempts('mint') }

  /** Every token issued so far (e.g. to prove none of them leaks into an error or a log). */
  get issuedTokens (): string[] {
    return [...this.issued.keys()]
  }

  /** What the stand-in knows about a token it issued, or undefined. */
  tokenInfo (token: string): IssuedToken | undefined {
    return this.issued.get(token)
  }

  /** True when `token` was issued here and has not expired on the stand-in's clock. */
  isTokenValid (token: string): boolean {
    const info = this.issued.get(token)
    return info !== undefined && info.expiresAt > this.now()
  }

  /** Records a newly issued token and counts a success on its endpoint. */
  protected issue (token: string, endpoint: string, scope?: string, lifetimeSeconds = this.lifetimeSeconds): IssuedToken {
    const issuedAt = this.now()
    const info = { endpoint, issuedAt, expiresAt: issuedAt + lifetimeSeconds * 1000, scope }
    this.issued.set(token, info)
    return info
  }

  /** A random opaque token. */
  protected opaqueToken (prefix: string): string {
    return `${prefix}_${randomBytes(24).toString('base64url')}`
  }

  /** An HS256 JWT signed with a per-stand-in key (clients only decode it; claims may be deliberately odd). */
  protected jwt (claims: Record<string, unknown>): string {
    const encode = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
    const input = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode({ jti: randomUUID(), ...claims })}`
    return `${input}.${createHmac('sha256', this.jwtKey).update(input).digest('base64url')}`
  }

  private takeFault (endpoint: string): Fault | undefined {
    const active = this.faults.find(candidate => candidate.endpoint === undefined || candidate.endpoint === endpoint)
    if (active === undefined) return undefined
    active.remaining -= 1
    if (active.remaining <= 0) this.faults = this.faults.filter(candidate => candidate !== active)
    return active.fault
  }

  private onRequest (req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const url = new URL(req.url ?? '/', this.url)
      const method = req.method ?? 'GET'
      const endpoint = this.route(method, url.pathname)
      if (endpoint === undefined) {
        this.send(res, this.errorReply(404, 'not found'))
        return
      }
      this.attemptCounts.set(endpoint, this.attempts(endpoint) + 1)
      const rawPath = req.url ?? '/'
      this.requests.push({ endpoint, method, path: rawPath, headers: req.headers, body, at: this.now() })
      const fault = this.takeFault(endpoint)
      const answer = (): void => { this.answer(res, { endpoint, method, url, rawPath, headers: req.headers, body, fault }) }
      if (fault?.kind === 'latency') {
        const timer = setTimeout(() => { this.timers.delete(timer); answer() }, fault.ms)
        this.timers.add(timer)
        return
      }
      answer()
    })
  }

  private answer (res: ServerResponse, request: StandInRequest): void {
    if (res.destroyed) return
    const { fault } = request
    switch (fault?.kind) {
      case 'drop':
        res.socket?.destroy()
        return
      case 'server-error':
        this.send(res, this.errorReply(fault.status ?? 503, 'service unavailable'))
        return
      case 'rate-limit': {
        const reply = this.errorReply(429, 'too many requests')
        this.send(res, { ...reply, headers: { ...reply.headers, 'retry-after': fault.retryAfter ?? '7' } })
        return
      }
      case 'wrong-credentials':
        this.send(res, this.wrongCredentialsReply(request, fault.code))
        return
      case 'malformed-json':
        this.send(res, { status: 200, body: '{"access_token": "trunc' })
        return
      default: {
        const reply = this.handle(request)
        // A 2xx without the token gave the client nothing: not counted as issued.
        if (reply.status >= 200 && reply.status < 300 && fault?.kind !== 'missing-token') this.successCounts.set(request.endpoint, this.successes(request.endpoint) + 1)
        this.send(res, reply)
      }
    }
  }

  private send (res: ServerResponse, reply: StandInReply): void {
    if (res.destroyed) return
    const body = reply.body === undefined ? '' : typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body)
    res.writeHead(reply.status, {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      ...this.commonHeaders(),
      ...reply.headers
    })
    res.end(body)
  }
}

/** Decodes `Authorization: Basic …` into its two halves, or undefined when absent or malformed. */
export function decodeBasic (header: string | undefined): { user: string, password: string } | undefined {
  const match = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header ?? '')
  if (match?.[1] === undefined) return undefined
  const pair = Buffer.from(match[1], 'base64').toString('utf8')
  const colon = pair.indexOf(':')
  if (colon === -1) return undefined
  return { user: pair.slice(0, colon), password: pair.slice(colon + 1) }
}

/** The bearer token of an `Authorization` header, or undefined. */
export function bearerToken (header: string | undefined): string | undefined {
  const match = /^Bearer (\S+)$/i.exec(header ?? '')
  return match?.[1]
}

/** Parses a JSON request body into an object, or undefined. */
export function jsonObject (body: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body)
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

/** True when the request's content type is `type` (parameters such as charset ignored). */
export function hasContentType (headers: IncomingHttpHeaders, type: string): boolean {
  return (headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() === type
}

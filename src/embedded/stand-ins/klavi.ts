/**
 * Klavi Link API stand-in (docs/providers.md § Klavi): `POST /data/v1/auth` with JSON `{ accessKey, secretKey }`
 * → `{ accessToken (JWT), expireIn }`; `GET /data/v1/refresh` with `Authorization: Bearer <current token>`
 * → `{ accessToken, expireIn }`, only for a token it issued that has not expired on its clock. Bad
 * credentials: 401 `{ statusCode: 401, error: "Unauthorized", message: "Invalid accessKey or secretKey" }`.
 */
import type { SecretData } from '../../providers/types.js'
import { bearerToken, hasContentType, jsonObject, ProviderStandIn, type StandInOptions, type StandInReply, type StandInRequest } from './stand-in.js'

export interface KlaviStandInOptions extends StandInOptions {
  accessKey?: string
  secretKey?: string
  /** `expireIn` is documented as a string but shown as a number; default number. */
  expireInAs?: 'number' | 'string'
}

const reasons: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 429: 'Too Many Requests' }

export class KlaviStandIn extends ProviderStandIn {
  readonly name = 'klavi'
  /** The credentials it accepts, shaped like the Vault secret (`accessKey`, `secretKey`). */
  secret: SecretData
  expireInAs: 'number' | 'string'

  constructor (options: KlaviStandInOptions = {}) {
    super(options, 1800)
    this.secret = { accessKey: options.accessKey ?? 'klavi-access-key', secretKey: options.secretKey ?? 'klavi-secret-key' }
    this.expireInAs = options.expireInAs ?? 'number'
  }

  /** Tokens issued by the refresh endpoint. */
  get refreshes (): number { return this.successes('refresh') }
  /** Requests to the refresh endpoint, including rejected ones. */
  get refreshAttempts (): number { return this.attempts('refresh') }

  protected route (method: string, pathname: string): string | undefined {
    if (method === 'POST' && pathname === '/data/v1/auth') return 'mint'
    if (method === 'GET' && pathname === '/data/v1/refresh') return 'refresh'
    return undefined
  }

  protected errorReply (status: number, message: string): StandInReply {
    return { status, body: { statusCode: status, error: reasons[status] ?? (status >= 500 ? 'Internal Server Error' : 'Error'), message } }
  }

  protected wrongCredentialsReply (request: StandInRequest): StandInReply {
    return this.errorReply(401, request.endpoint === 'refresh' ? 'Token invalid or expired' : 'Invalid accessKey or secretKey')
  }

  protected handle (request: StandInRequest): StandInReply {
    if (request.endpoint === 'refresh') {
      const current = bearerToken(request.headers.authorization)
      if (current === undefined || !this.isTokenValid(current)) return this.wrongCredentialsReply(request)
      return this.tokenReply(request)
    }
    const body = hasContentType(request.headers, 'application/json') ? jsonObject(request.body) : undefined
    if (body === undefined || typeof body.accessKey !== 'string' || typeof body.secretKey !== 'string') {
      return this.errorReply(400, 'accessKey and secretKey are required')
    }
    if (body.accessKey !== this.secret.accessKey || body.secretKey !== this.secret.secretKey) return this.wrongCredentialsReply(request)
    return this.tokenReply(request)
  }

  private tokenReply (request: StandInRequest): StandInReply {
    if (request.fault?.kind === 'missing-token') return { status: 200, body: { expireIn: this.lifetimeSeconds } }
    const nowSeconds = Math.floor(this.now() / 1000)
    const accessToken = this.jwt({ sub: this.secret.accessKey, iat: nowSeconds, exp: nowSeconds + this.lifetimeSeconds })
    this.issue(accessToken, request.endpoint)
    const body: Record<string, unknown> = { accessToken, expireIn: this.expireInAs === 'string' ? String(this.lifetimeSeconds) : this.lifetimeSeconds }
    if (request.fault?.kind === 'missing-lifetime') delete body.expireIn
    if (request.fault?.kind === 'malformed-lifetime') body.expireIn = request.fault.value ?? 'soon'
    return { status: 200, body }
  }
}

/** Starts a Klavi stand-in on 127.0.0.1. */
export async function startKlaviStandIn (options: KlaviStandInOptions = {}): Promise<KlaviStandIn> {
  return await new KlaviStandIn(options).start()
}

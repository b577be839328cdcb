/**
 * Kigo partner API stand-in (docs/providers.md § Kigo): `POST /api/v1/auth/sessions` with JSON
 * `{ api_key, partner_id }` → `{ token }` (no expiry field; 30 min documented). Errors `{ message }`
 * (an inference in the docs). Tokens are opaque by default, or JWTs with `exp` (`tokenFormat: 'jwt'`).
 */
import type { SecretData } from '../../providers/types.js'
import { hasContentType, jsonObject, ProviderStandIn, type StandInOptions, type StandInReply, type StandInRequest } from './stand-in.js'

export interface KigoStandInOptions extends StandInOptions {
  apiKey?: string
  partnerId?: string
  /** 'opaque' (default) or 'jwt' (a JWT whose `exp` is issue time + lifetime). */
  tokenFormat?: 'opaque' | 'jwt'
}

export class KigoStandIn extends ProviderStandIn {
  readonly name = 'kigo'
  /** The credentials it accepts, shaped like the Vault secret (`api_key`, `partner_id`). */
  secret: SecretData
  tokenFormat: 'opaque' | 'jwt'

  constructor (options: KigoStandInOptions = {}) {
    super(options, 1800)
    this.secret = { api_key: options.apiKey ?? 'kigo-api-key', partner_id: options.partnerId ?? 'kigo-partner-id' }
    this.tokenFormat = options.tokenFormat ?? 'opaque'
  }

  protected route (method: string, pathname: string): string | undefined {
    return method === 'POST' && pathname === '/api/v1/auth/sessions' ? 'mint' : undefined
  }

  protected errorReply (status: number, message: string): StandInReply {
    return { status, body: { message } }
  }

  protected wrongCredentialsReply (): StandInReply {
    return this.errorReply(401, 'Invalid api_key or partner_id')
  }

  protected handle (request: StandInRequest): StandInReply {
    const body = hasContentType(request.headers, 'application/json') ? jsonObject(request.body) : undefined
    if (body === undefined || typeof body.api_key !== 'string' || typeof body.partner_id !== 'string') {
      return this.errorReply(400, 'api_key and partner_id are required')
    }
    if (body.api_key !== this.secret.api_key || body.partner_id !== this.secret.partner_id) return this.wrongCredentialsReply()
    if (request.fault?.kind === 'missing-token') return { status: 200, body: {} }

    const nowSeconds = Math.floor(this.now() / 1000)
    let token: string
    if (this.tokenFormat === 'jwt' || request.fault?.kind === 'missing-lifetime' || request.fault?.kind === 'malformed-lifetime') {
      const claims: Record<string, unknown> = { sub: this.secret.partner_id, iat: nowSeconds, exp: nowSeconds + this.lifetimeSeconds }
      if (request.fault?.kind === 'missing-lifetime') delete claims.exp
      if (request.fault?.kind === 'malformed-lifetime') claims.exp = request.fault.value ?? 'soon'
      token = this.jwt(claims)
    } else {
      token = this.opaqueToken('kigo')
    }
    this.issue(token, 'mint')
    return { status: 200, body: { token } }
  }
}

/** Starts a Kigo stand-in on 127.0.0.1. */
export async function startKigoStandIn (options: KigoStandInOptions = {}): Promise<KigoStandIn> {
  return await new KigoStandIn(options).start()
}

/**
 * Kigo partner API stand-in (docs/providers.md § Kigo): `POST /api/v1/auth/sessions` with JSON
 * `{ api_key, partner_id }` → `{ token }` (no expiry field; 30 min documented). User sessions:
 * `POST /api/v1/auth/sessions/accounts` with the partner token as Bearer and
 * `{ external_user_id, user_email, external_program_id | brand_identifier }` → `{ token, refresh_token }`;
 * `POST /api/v1/auth/sessions/accounts/refresh` `{ refresh_token }` → a new pair (the old refresh token is
 * spent). An expired or revoked partner token gets 401. Errors `{ message }` (an inference in the docs).
 * Tokens are opaque by default, or JWTs with `exp` (`tokenFormat: 'jwt'`).
 */
import type { SecretData } from '../../providers/types.js'
import { hasContentType, jsonObject, ProviderStandIn, type StandInOptions, type StandInReply, type StandInRequest } from './stand-in.js'

export interface KigoStandInOptions extends StandInOptions {
  apiKey?: string
  partnerId?: string
  /** 'opaque' (default) or 'jwt' (a JWT whose `exp` is issue time + lifetime). */
  tokenFormat?: 'opaque' | 'jwt'
  /** Lifetime of user session tokens in seconds; default 1800 (the guide's 30 minutes). */
  userLifetimeSeconds?: number
}

/** A user session as the stand-in recorded it (the email only to check what the broker sent). */
export interface KigoUserSession {
  externalUserId: string
  userEmail: string
  programOrBrand: string
  token: string
  refreshToken: string
}

export class KigoStandIn extends ProviderStandIn {
  readonly name = 'kigo'
  /** The credentials it accepts, shaped like the Vault secret (`api_key`, `partner_id`). */
  secret: SecretData
  tokenFormat: 'opaque' | 'jwt'
  userLifetimeSeconds: number
  /** Every user session made or renewed, in order. */
  readonly userSessions: KigoUserSession[] = []
  /** Refresh tokens that may still be used, to the user they belong to. */
  private readonly refreshTokens = new Map<string, { externalUserId: string, userEmail: string, programOrBrand: string }>()
  /** Partner tokens Kigo no longer accepts before their expiry (revokePartnerTokens). */
  private readonly revoked = new Set<string>()

  constructor (options: KigoStandInOptions = {}) {
    super(options, 1800)
    this.secret = { api_key: options.apiKey ?? 'kigo-api-key', partner_id: options.partnerId ?? 'kigo-partner-id' }
    this.tokenFormat = options.tokenFormat ?? 'opaque'
    this.userLifetimeSeconds = options.userLifetimeSeconds ?? 1800
  }

  /** Makes every partner token issued so far invalid, as an expiry on Kigo's side would. */
  revokePartnerTokens (): void {
    for (const [token, info] of this.issued) if (info.endpoint === 'mint') this.revoked.add(token)
  }

  protected route (method: string, pathname: string): string | undefined {
    if (method !== 'POST') return undefined
    if (pathname === '/api/v1/auth/sessions') return 'mint'
    if (pathname === '/api/v1/auth/sessions/accounts') return 'accounts'
    if (pathname === '/api/v1/auth/sessions/accounts/refresh') return 'account-refresh'
    return undefined
  }

  protected errorReply (status: number, message: string): StandInReply {
    return { status, body: { message } }
  }

  protected wrongCredentialsReply (): StandInReply {
    return this.errorReply(401, 'Invalid api_key or partner_id')
  }

  protected handle (request: StandInRequest): StandInReply {
    if (request.endpoint === 'accounts') return this.createUserSession(request)
    if (request.endpoint === 'account-refresh') return this.refreshUserSession(request)
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

  private createUserSession (request: StandInRequest): StandInReply {
    const bearer = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1]
    const partner = bearer === undefined ? undefined : this.issued.get(bearer)
    if (bearer === undefined || partner?.endpoint !== 'mint' || partner.expiresAt <= this.now() || this.revoked.has(bearer)) {
      return this.errorReply(401, 'Invalid or expired partner token')
    }
    const body = hasContentType(request.headers, 'application/json') ? jsonObject(request.body) : undefined
    const programOrBrand = body?.external_program_id ?? body?.brand_identifier
    const exactlyOne = (body?.external_program_id === undefined) !== (body?.brand_identifier === undefined)
    if (body === undefined || typeof body.external_user_id !== 'string' || typeof body.user_email !== 'string' || !exactlyOne || typeof programOrBrand !== 'string') {
      return this.errorReply(400, 'external_user_id, user_email and one of external_program_id or brand_identifier are required')
    }
    return this.userSession({ externalUserId: body.external_user_id, userEmail: body.user_email, programOrBrand }, 'accounts')
  }

  private refreshUserSession (request: StandInRequest): StandInReply {
    const body = hasContentType(request.headers, 'application/json') ? jsonObject(request.body) : undefined
    const refreshToken = typeof body?.refresh_token === 'string' ? body.refresh_token : undefined
    const user = refreshToken === undefined ? undefined : this.refreshTokens.get(refreshToken)
    if (refreshToken === undefined || user === undefined) return this.errorReply(401, 'Invalid refresh token')
    this.refreshTokens.delete(refreshToken)
    return this.userSession(user, 'account-refresh')
  }

  private userSession (user: { externalUserId: string, userEmail: string, programOrBrand: string }, endpoint: string): StandInReply {
    const nowSeconds = Math.floor(this.now() / 1000)
    const token = this.tokenFormat === 'jwt' ? this.jwt({ sub: user.externalUserId, iat: nowSeconds, exp: nowSeconds + this.userLifetimeSeconds }) : this.opaqueToken('kigo_user')
    const refreshToken = this.opaqueToken('kigo_refresh')
    this.issue(token, endpoint, undefined, this.userLifetimeSeconds)
    this.refreshTokens.set(refreshToken, user)
    this.userSessions.push({ ...user, token, refreshToken })
    return { status: 200, body: { token, refresh_token: refreshToken } }
  }
}

/** Starts a Kigo stand-in on 127.0.0.1. */
export async function startKigoStandIn (options: KigoStandInOptions = {}): Promise<KigoStandIn> {
  return await new KigoStandIn(options).start()
}

/**
 * SIR Giving partner API stand-in (docs/providers.md § SIR Giving): every route under `/v1/partner/` checks the
 * three documented headers — `X-Partner-Key` (the sk_ key; a pk_ key gets 403), `X-Timestamp` (Unix
 * seconds, ±5 minutes of its clock) and `X-Signature` (lowercase hex HMAC-SHA256 keyed with `hmacSecret`,
 * or with the sk_ key for legacy credentials, over timestamp + METHOD + pathWithQuery + hex(sha256(body))).
 * Accepted calls answer `{ ok: true, method, path }` with X-RateLimit-* headers.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto'
import type { SecretData } from '../../providers/types.js'
import { ProviderStandIn, type StandInOptions, type StandInReply, type StandInRequest } from './stand-in.js'

export interface SirGivingStandInOptions extends StandInOptions {
  secretKey?: string
  hmacSecret?: string
  publicKey?: string
  webhookSecret?: string
  /** Legacy keys: no hmacSecret, requests are signed with the secret key. */
  legacy?: boolean
}

/** The server's allowed clock skew (±5 minutes, documented). */
export const sirGivingSkewSeconds = 300

export class SirGivingStandIn extends ProviderStandIn {
  readonly name = 'sir-giving'
  /** The keys it accepts, shaped like the Vault secret (`secretKey`, `hmacSecret` unless legacy, `publicKey`, `webhookSecret`). */
  secret: SecretData
  /** Why the last rejected call was rejected (for test assertions). */
  lastRejection: string | undefined

  constructor (options: SirGivingStandInOptions = {}) {
    super(options, 0)
    const secret: Record<string, string> = {
      secretKey: options.secretKey ?? `sk_test_${randomBytes(12).toString('hex')}`,
      publicKey: options.publicKey ?? `pk_test_${randomBytes(12).toString('hex')}`,
      webhookSecret: options.webhookSecret ?? `whsec_${randomBytes(16).toString('hex')}`
    }
    if (options.legacy !== true) secret.hmacSecret = options.hmacSecret ?? randomBytes(32).toString('hex')
    this.secret = secret
  }

  /** Partner calls accepted. */
  get acceptedCalls (): number { return this.successes('partner') }

  protected route (_method: string, pathname: string): string | undefined {
    return pathname.startsWith('/v1/partner/') ? 'partner' : undefined
  }

  protected errorReply (status: number, message: string, code?: string | number): StandInReply {
    const fallback = status === 401 ? 'UNAUTHORIZED' : status === 403 ? 'FORBIDDEN' : status === 429 ? 'RATE_LIMITED' : status >= 500 ? 'INTERNAL' : 'BAD_REQUEST'
    return { status, headers: this.rateLimitHeaders(), body: { code: code === undefined ? fallback : String(code), message } }
  }

  protected wrongCredentialsReply (): StandInReply {
    return this.errorReply(401, 'invalid partner credentials')
  }

  protected handle (request: StandInRequest): StandInReply {
    const rejection = this.check(request)
    this.lastRejection = rejection?.reason
    if (rejection !== undefined) return this.errorReply(rejection.status, rejection.reason)
    return { status: 200, headers: this.rateLimitHeaders(), body: { ok: true, method: request.method, path: request.rawPath } }
  }

  private check (request: StandInRequest): { status: number, reason: string } | undefined {
    const header = (name: string): string | undefined => {
      const value = request.headers[name]
      return Array.isArray(value) ? value[0] : value
    }
    const key = header('x-partner-key')
    if (key === undefined) return { status: 401, reason: 'missing X-Partner-Key' }
    if (key.startsWith('pk_')) return { status: 403, reason: 'public key used on a secret endpoint' }
    if (key !== this.secret.secretKey) return { status: 401, reason: 'unknown partner key' }
    const timestamp = header('x-timestamp')
    if (timestamp === undefined || !/^\d+$/.test(timestamp)) return { status: 401, reason: 'missing or malformed X-Timestamp' }
    if (Math.abs(this.now() / 1000 - Number(timestamp)) > sirGivingSkewSeconds) return { status: 401, reason: 'X-Timestamp outside ±5 minutes (check clock skew)' }
    const bodySha256 = createHash('sha256').update(request.body, 'utf8').digest('hex')
    const path = request.rawPath
    const signingKey = this.secret.hmacSecret ?? this.secret.secretKey ?? ''
    const expected = createHmac('sha256', signingKey).update(`${timestamp}${request.method.toUpperCase()}${path}${bodySha256}`).digest('hex')
    if (header('x-signature') !== expected) return { status: 401, reason: 'invalid X-Signature' }
    return undefined
  }

  private rateLimitHeaders (): Record<string, string> {
    return { 'x-ratelimit-limit': '100', 'x-ratelimit-remaining': '99', 'x-ratelimit-reset': String(Math.floor(this.now() / 1000) + 60) }
  }
}

/** Starts a SIR Giving partner API stand-in on 127.0.0.1. */
export async function startSirGivingStandIn (options: SirGivingStandInOptions = {}): Promise<SirGivingStandIn> {
  return await new SirGivingStandIn(options).start()
}

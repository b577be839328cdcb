/**
 * Kivra sender API stand-in (docs/providers.md § Kivra): `POST /v1/auth` with HTTP Basic
 * base64(client_id:client_secret) and a form body `grant_type=client_credentials` (optional `scope`) →
 * `{ access_token, token_type: "bearer", expires_in, scope, state }`. Errors are
 * `{ code, short_message, long_message }` plus `x-error-code`; every response has `x-correlation-id`.
 */
import { randomUUID } from 'node:crypto'
import type { SecretData } from '../../providers/types.js'
import { decodeBasic, hasContentType, ProviderStandIn, type StandInOptions, type StandInReply, type StandInRequest } from './stand-in.js'

export interface KivraStandInOptions extends StandInOptions {
  clientId?: string
  clientSecret?: string
  /** Scope granted when the request names none. */
  defaultScope?: string
}

export class KivraStandIn extends ProviderStandIn {
  readonly name = 'kivra'
  /** The client credentials it accepts, shaped like the Vault secret (`client_id`, `client_secret`). */
  secret: SecretData
  /** Kivra sends `code` "sometimes as a string, sometimes as a number": choose which. */
  errorCodeAs: 'number' | 'string' = 'number'
  /** The x-correlation-id of the last response. */
  lastCorrelationId: string | undefined
  private readonly defaultScope: string

  constructor (options: KivraStandInOptions = {}) {
    super(options, 28_800)
    this.secret = {
      client_id: options.clientId ?? 'kivra-client-id',
      client_secret: options.clientSecret ?? 'kivra-client-secret'
    }
    this.defaultScope = options.defaultScope ?? 'kivra.v1.tenant.example.*'
  }

  protected route (method: string, pathname: string): string | undefined {
    return method === 'POST' && pathname === '/v1/auth' ? 'mint' : undefined
  }

  protected override commonHeaders (): Record<string, string> {
    this.lastCorrelationId = randomUUID()
    return { 'x-correlation-id': this.lastCorrelationId }
  }

  /** Five-digit code whose first three digits are the HTTP status. */
  protected errorReply (status: number, message: string, code: string | number = `${status}00`): StandInReply {
    const value = this.errorCodeAs === 'number' ? Number(code) : String(code)
    return {
      status,
      headers: { 'x-error-code': String(code) },
      body: { code: value, short_message: message, long_message: `${message} (Kivra stand-in)` }
    }
  }

  protected wrongCredentialsReply (_request: StandInRequest, code: string | number = '40104'): StandInReply {
    return this.errorReply(401, String(code) === '40103' ? 'invalid grant' : 'invalid client', code)
  }

  protected handle (request: StandInRequest): StandInReply {
    if (!hasContentType(request.headers, 'application/x-www-form-urlencoded')) {
      return this.errorReply(400, 'expected a form body', '40000')
    }
    const credentials = decodeBasic(request.headers.authorization)
    // Exact comparison: a trailing newline in the pair (a classic `echo | base64` mistake) is a wrong client.
    if (credentials === undefined || credentials.user !== this.secret.client_id || credentials.password !== this.secret.client_secret) {
      return this.wrongCredentialsReply(request)
    }
    const form = new URLSearchParams(request.body)
    if (form.get('grant_type') !== 'client_credentials') return this.wrongCredentialsReply(request, '40103')
    const scope = form.get('scope') ?? this.defaultScope

    const token = this.opaqueToken('kivra')
    this.issue(token, 'mint', scope)
    const body: Record<string, unknown> = { access_token: token, token_type: 'bearer', expires_in: this.lifetimeSeconds, scope, state: null }
    if (request.fault?.kind === 'missing-lifetime') delete body.expires_in
    if (request.fault?.kind === 'malformed-lifetime') body.expires_in = request.fault.value ?? 'soon'
    if (request.fault?.kind === 'missing-token') delete body.access_token
    return { status: 200, body }
  }
}

/** Starts a Kivra stand-in on 127.0.0.1. */
export async function startKivraStandIn (options: KivraStandInOptions = {}): Promise<KivraStandIn> {
  return await new KivraStandIn(options).start()
}

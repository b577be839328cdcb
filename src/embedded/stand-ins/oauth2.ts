/**
 * A generic RFC 6749 authorization server stand-in: `POST /oauth/token`, client credentials grant, client
 * authentication by `client_secret_basic` (RFC 6749 §2.3.1: id and secret form-urlencoded, then Basic) or
 * `client_secret_post`, errors per §5.2 (`invalid_client` is 401 with `WWW-Authenticate` when Basic was
 * tried). The parameters of the last token request are kept for assertions (`lastParams`).
 */
import type { SecretData } from '../../providers/types.js'
import { decodeBasic, hasContentType, ProviderStandIn, type StandInOptions, type StandInReply, type StandInRequest } from './stand-in.js'

export interface OAuth2StandInOptions extends StandInOptions {
  clientId?: string
  clientSecret?: string
  /** Which client authentication the client is registered for; default either. */
  authMethod?: 'basic' | 'post' | 'any'
  /** Scopes the client may request; default any. */
  allowedScopes?: readonly string[]
}

export class OAuth2StandIn extends ProviderStandIn {
  readonly name = 'oauth2'
  /** The client it accepts, shaped like the Vault secret (`client_id`, `client_secret`). */
  secret: SecretData
  authMethod: 'basic' | 'post' | 'any'
  allowedScopes: readonly string[] | undefined
  /** Form parameters of the last token request, without client_secret. */
  lastParams: URLSearchParams | undefined
  /** How the last request authenticated its client. */
  lastAuthMethod: 'basic' | 'post' | 'none' | undefined

  constructor (options: OAuth2StandInOptions = {}) {
    super(options, 3600)
    this.secret = { client_id: options.clientId ?? 'oauth2-client', client_secret: options.clientSecret ?? 'oauth2-client-secret' }
    this.authMethod = options.authMethod ?? 'any'
    this.allowedScopes = options.allowedScopes
  }

  /** The token endpoint, usable as a credential's `token_url`. */
  get tokenUrl (): string { return `${this.url}/oauth/token` }

  protected route (method: string, pathname: string): string | undefined {
    return method === 'POST' && pathname === '/oauth/token' ? 'mint' : undefined
  }

  protected errorReply (status: number, message: string, code?: string | number): StandInReply {
    const error = code === undefined
      ? status === 429 || status >= 500 ? 'temporarily_unavailable' : status === 404 ? 'not_found' : 'invalid_request'
      : String(code)
    return { status, body: { error, error_description: message } }
  }

  protected wrongCredentialsReply (request: StandInRequest, code: string | number = 'invalid_client'): StandInReply {
    const reply = this.errorReply(401, 'client authentication failed', code)
    // RFC 6749 §5.2: a client that tried Basic gets a WWW-Authenticate challenge with the 401.
    return decodeBasic(request.headers.authorization) !== undefined ? { ...reply, headers: { 'www-authenticate': 'Basic realm="oauth2-stand-in", error="invalid_client"' } } : reply
  }

  protected handle (request: StandInRequest): StandInReply {
    if (!hasContentType(request.headers, 'application/x-www-form-urlencoded')) return this.errorReply(400, 'expected a form body')
    const form = new URLSearchParams(request.body)
    const basic = decodeBasic(request.headers.authorization)
    const hasPostSecret = form.has('client_secret')
    const params = new URLSearchParams(form)
    params.delete('client_secret')
    this.lastParams = params
    if (basic !== undefined && hasPostSecret) return this.errorReply(400, 'more than one client authentication method')

    let clientId: string | undefined
    let clientSecret: string | undefined
    if (basic !== undefined) {
      // RFC 6749 §2.3.1: both halves are application/x-www-form-urlencoded before base64.
      const decode = (value: string): string => decodeURIComponent(value.replace(/\+/g, ' '))
      clientId = decode(basic.user)
      clientSecret = decode(basic.password)
      this.lastAuthMethod = 'basic'
    } else if (hasPostSecret) {
      clientId = form.get('client_id') ?? undefined
      clientSecret = form.get('client_secret') ?? undefined
      this.lastAuthMethod = 'post'
    } else {
      this.lastAuthMethod = 'none'
    }
    const methodAllowed = this.authMethod === 'any' || this.authMethod === this.lastAuthMethod
    if (!methodAllowed || clientId !== this.secret.client_id || clientSecret !== this.secret.client_secret) return this.wrongCredentialsReply(request)
    if (form.get('grant_type') !== 'client_credentials') return this.errorReply(400, 'only client_credentials', 'unsupported_grant_type')

    const requested = form.get('scope') ?? undefined
    if (requested !== undefined && this.allowedScopes !== undefined && !requested.split(' ').every(s => this.allowedScopes?.includes(s))) {
      return this.errorReply(400, 'scope not allowed for this client', 'invalid_scope')
    }
    if (request.fault?.kind === 'missing-token') return { status: 200, body: { token_type: 'Bearer', expires_in: this.lifetimeSeconds } }
    const token = this.opaqueToken('oauth2')
    this.issue(token, 'mint', requested)
    const body: Record<string, unknown> = { access_token: token, token_type: 'Bearer', expires_in: this.lifetimeSeconds }
    if (requested !== undefined) body.scope = requested
    if (request.fault?.kind === 'missing-lifetime') delete body.expires_in
    if (request.fault?.kind === 'malformed-lifetime') body.expires_in = request.fault.value ?? 'soon'
    return { status: 200, body }
  }
}

/** Starts a generic OAuth2 authorization server stand-in on 127.0.0.1. */
export async function startOAuth2StandIn (options: OAuth2StandInOptions = {}): Promise<OAuth2StandIn> {
  return await new OAuth2StandIn(options).start()
}

// oidc-provider ships no type declarations; this covers the small surface the tests use.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http'

  export interface StoredClientCredentials {
    readonly clientId: string
    readonly scope?: string
    readonly exp?: number
    readonly aud?: string | string[]
  }

  export default class Provider {
    constructor (issuer: string, configuration?: Record<string, unknown>)
    callback (): (req: IncomingMessage, res: ServerResponse) => void
    on (event: string, listener: (...args: unknown[]) => void): this
    readonly ClientCredentials: { find: (value: string) => Promise<StoredClientCredentials | undefined> }
  }

  export const errors: { InvalidTarget: new (description?: string) => Error }
}

/**
 * @credential-broker/client — the callers' library of credential-broker. See README.md.
 *
 * ```ts
 * import { createBrokerClient } from '@credential-broker/client'
 * const broker = createBrokerClient({ baseUrl: 'http://credential-broker:8080', apiKey: process.env.BROKER_API_KEY! })
 * const response = await broker.fetch('kivra-production', 'https://sender.api.kivra.com/v1/tenant/abc/content', { method: 'POST', body })
 * ```
 */
export { createBrokerClient } from './client.js'
export type {
  ApiKeyOptions, BrokerClient, BrokerClientOptions, BrokerFetchInit, GetTokenOptions, ProxyInit, RejectionCheck,
  SignRequest, Token, TokenFunctionOptions, WebhookDelivery, WebhookHeaders, WebhookVerification
} from './client.js'
export { BrokerError, clientErrorCodes } from './errors.js'
export type { BrokerErrorInit, ClientErrorCode } from './errors.js'
export { cacheMarginSeconds } from './token-cache.js'
export { parseRetryAfter, type FetchLike } from './http.js'
export type { QueryInit } from './proxy-path.js'

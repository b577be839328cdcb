import type { z } from 'zod'

/**
 * Text read back from Redis, parsed as JSON and checked against `schema`; undefined when it is not JSON
 * or not of that shape. Never throws, and never returns the parse issues (they would quote the text).
 */
export function parseStored<T> (text: string, schema: z.ZodType<T>): T | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  const result = schema.safeParse(value)
  return result.success ? result.data : undefined
}

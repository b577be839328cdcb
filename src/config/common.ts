/** What the parts of the configuration share: URL checks and the one format of a problem line. */
import { z } from 'zod'

/** An environment variable set to "" counts as unset. */
export const emptyToUndefined = (value: unknown): unknown => value === '' ? undefined : value

export const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' })

function formatPath (path: readonly PropertyKey[]): string {
  return path.reduce<string>((text, key) => typeof key === 'number' ? `${text}[${key}]` : text === '' ? String(key) : `${text}.${String(key)}`, '')
}

export function zodProblems (error: z.ZodError, where: string): string[] {
  return error.issues.map(issue => {
    const path = formatPath(issue.path)
    return `${where}${path === '' ? '' : (where === '' ? '' : ': ') + path}: ${issue.message}`
  })
}

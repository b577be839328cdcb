/**
 * ESLint rule: a function's own body may not exceed `max` lines, not counting blank lines, comment-only
 * lines, or the bodies of functions nested in it. ESLint's max-lines-per-function counts nested functions
 * too, which would flag every factory closure of small functions; this counts what a reader must hold at
 * once. Exceed it only with an eslint-disable comment that says why.
 */
const functionTypes = new Set(['FunctionDeclaration', 'FunctionExpression', 'ArrowFunctionExpression'])

export default {
  meta: {
    type: 'suggestion',
    docs: { description: 'limit the lines of a function body, nested functions excluded' },
    schema: [{ type: 'object', properties: { max: { type: 'integer', minimum: 1 } }, additionalProperties: false }],
    messages: { tooLong: 'This function has {{count}} lines of its own (nested functions excluded); at most {{max}}.' }
  },
  create (context) {
    const max = context.options[0]?.max ?? 80
    const source = context.sourceCode
    const commentLines = new Set()
    for (const comment of source.getAllComments()) {
      for (let line = comment.loc.start.line; line <= comment.loc.end.line; line++) commentLines.add(line)
    }
    /** Lines with code (not blank, not only a comment). */
    const codeLine = (line) => {
      const text = source.lines[line - 1]?.trim() ?? ''
      if (text === '') return false
      if (!commentLines.has(line)) return true
      // A line holding a comment counts when code precedes the comment (`x = 1 // why`).
      const tokens = source.tokensAndComments.filter(token => token.loc.start.line === line && token.type !== 'Block' && token.type !== 'Line')
      return tokens.length > 0
    }
    const stack = []
    const enter = (node) => {
      if (node.body?.type !== 'BlockStatement') { stack.push(null); return }
      stack.push({ node, excluded: new Set() })
    }
    const exit = (node) => {
      const frame = stack.pop()
      if (frame === null || frame === undefined) return
      const { start, end } = node.body.loc
      let count = 0
      for (let line = start.line + 1; line < end.line; line++) if (!frame.excluded.has(line) && codeLine(line)) count++
      if (count > max) context.report({ node, loc: node.loc.start, messageId: 'tooLong', data: { count, max } })
      // This function's inner lines are not its parent's own lines (its first line, where it is called or declared, is).
      const parent = stack.findLast(entry => entry !== null)
      if (parent !== undefined) for (let line = start.line + 1; line <= end.line; line++) parent.excluded.add(line)
    }
    const visitors = {}
    for (const type of functionTypes) {
      visitors[type] = enter
      visitors[`${type}:exit`] = exit
    }
    return visitors
  }
}

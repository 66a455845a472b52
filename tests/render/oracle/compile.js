// Test-only oracle: compiles MJML with the official npm mjml (pinned in package.json).
// Long-lived: one JSON request per stdin line {"id", "mjml"}, one JSON reply per stdout line
// {"id", "html", "errors", "ms"}; strict validation, comments dropped like mrml's disable_comments.
"use strict";
const readline = require("readline");
const mjml2html = require("mjml");

const lines = readline.createInterface({ input: process.stdin, terminal: false });
lines.on("line", (line) => {
  const request = JSON.parse(line);
  const started = process.hrtime.bigint();
  let reply;
  try {
    const result = mjml2html(request.mjml, { validationLevel: "strict", keepComments: false });
    reply = { html: result.html, errors: result.errors.map((e) => e.formattedMessage) };
  } catch (error) {
    const details = error.errors ? error.errors.map((e) => e.formattedMessage) : [String(error)];
    reply = { html: "", errors: details };
  }
  reply.id = request.id;
  reply.ms = Number(process.hrtime.bigint() - started) / 1e6;
  process.stdout.write(JSON.stringify(reply) + "\n");
});

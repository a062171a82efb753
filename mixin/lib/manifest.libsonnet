// Text forms of the generated files, without the final newline `jsonnet -S` adds. Numbers are written in their shortest exact form
// ("0.1", not the 17 digits std.manifestJson gives), so the committed files read as written.
local number(value) =
  if std.floor(value) == value && std.abs(value) < 1e15 then '%d' % value else '%.15g' % value;

local isScalar(value) = !std.isObject(value) && !std.isArray(value);

// A JSON string (also a YAML double-quoted one). std.escapeStringJson walks the string a
// character at a time, which makes generating the dashboard take seconds; these
// replacements cover every character the mixin's texts hold that needs escaping.
local quote(text) =
  '"' + std.strReplace(std.strReplace(std.strReplace(std.strReplace(std.strReplace(
    text, '\\', '\\\\'), '"', '\\"'), '\n', '\\n'), '\t', '\\t'), '\r', '\\r') + '"';

local scalar(value) =
  if std.isString(value) then quote(value)
  else if std.isNumber(value) then number(value)
  else if std.isBoolean(value) then (if value then 'true' else 'false')
  else if value == null then 'null'
  else error 'cannot write a function';

{
  number:: number,

  // A duration of the config ('15m', '1h', '90s') in words: '15 minutes', '1 hour'.
  durationText(duration)::
    local units = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week' };
    local count = std.parseInt(std.substr(duration, 0, std.length(duration) - 1));
    local unit = units[duration[std.length(duration) - 1]];
    '%d %s%s' % [count, unit, if count == 1 then '' else 's'],

  // Seconds in words, in the largest unit that divides them.
  secondsText(seconds)::
    self.durationText(
      if seconds % 3600 == 0 then '%dh' % (seconds / 3600)
      else if seconds % 60 == 0 then '%dm' % (seconds / 60)
      else '%ds' % seconds
    ),

  // JSON with two-space indentation, keys in the order jsonnet keeps them (sorted).
  json(value)::
    local write(value, indent) =
      local inner = indent + '  ';
      if std.isObject(value) then
        local fields = std.objectFields(value);
        if fields == [] then '{}'
        else '{\n' + std.join(',\n', [
          inner + quote(field) + ': ' + write(value[field], inner)
          for field in fields
        ]) + '\n' + indent + '}'
      else if std.isArray(value) then
        if value == [] then '[]'
        else '[\n' + std.join(',\n', [inner + write(item, inner) for item in value]) + '\n' + indent + ']'
      else scalar(value);
    write(value, ''),

  // Block YAML: sequences indented under their key, strings double-quoted, and strings of
  // several lines as literal blocks so that PromQL and descriptions stay readable.
  yaml(value)::
    local block(text, indent) =
      local chomp = if std.endsWith(text, '\n') then '|' else '|-';
      local body = if std.endsWith(text, '\n') then std.substr(text, 0, std.length(text) - 1) else text;
      chomp + '\n' + std.join('\n', [
        if line == '' then '' else indent + line
        for line in std.split(body, '\n')
      ]);
    local inline(value, indent) =
      if std.isString(value) && std.length(std.split(value, '\n')) > 1
         && !std.startsWith(value, ' ')
      then block(value, indent)
      else scalar(value);
    local entries(value, indent) =
      if std.isObject(value) then
        std.join('\n', [
          local item = value[field];
          indent + field + ':' + (
            if isScalar(item) then ' ' + inline(item, indent + '  ')
            else if std.isObject(item) && std.objectFields(item) == [] then ' {}'
            else if std.isArray(item) && item == [] then ' []'
            else '\n' + entries(item, indent + '  ')
          )
          for field in std.objectFields(value)
        ])
      else
        std.join('\n', [
          if isScalar(item) then indent + '- ' + inline(item, indent + '  ')
          else if std.isObject(item) then
            local rest = entries(item, indent + '  ');
            indent + '- ' + std.substr(rest, std.length(indent) + 2, std.length(rest))
          else error 'nested sequences are not written'
          for item in value
        ]);
    entries(value, ''),
}

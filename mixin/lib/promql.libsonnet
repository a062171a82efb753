// PromQL pieces shared by the rules, the alerts and the dashboard, so that a panel and the
// alert it explains compute the same thing.
{
  // `metric{matchers}` with the empty matchers left out: `metric` alone when none remain.
  selector(metric, matchers=[])::
    local present = std.filter(function(matcher) matcher != '', matchers);
    if present == [] then metric else '%s{%s}' % [metric, std.join(', ', present)],

  // A comma-separated label list for `by (...)`, `without (...)`, `on (...)`.
  labels(names):: std.join(', ', names),

  // Share of an exporter's DingTalk calls that failed over `window`, per exporter (every
  // label but `api` and `errcode` kept). 0 while calls succeed, absent while none are made.
  // Errcodes of `ignoredErrcodes` are answers about a task, not faults of the API.
  apiErrors(matchers, window, ignoredErrcodes)::
    local ignored =
      if ignoredErrcodes == [] then []
      else ['errcode!~"%s"' % std.join('|', ignoredErrcodes)];
    'sum without (api, errcode) (rate(%s[%s]))'
    % [self.selector('dingtalk_api_errors_total', matchers + ignored), window],
  apiRequests(matchers, window)::
    'sum without (api) (rate(%s[%s]))' % [self.selector('dingtalk_api_requests_total', matchers), window],
  apiErrorRatio(matchers, window, ignoredErrcodes)::
    self.ratioOf(self.apiErrors(matchers, window, ignoredErrcodes), self.apiRequests(matchers, window)),
  // errors / requests, 0 where requests have no errors series, absent where requests are 0.
  ratioOf(errors, requests):: '(%s or %s * 0) / (%s > 0)' % [errors, requests, requests],
}

vcl 4.1;
# Varnish 7 for bench/run: placeholders in double at-signs are filled in by the harness.
# /o/... -> the static origin (nginx serving pre-rendered files), /f/... -> the fake DEX origin.
# Varnish's default gzip handling stays on: it asks the origin for gzip, stores the gzip body and
# hands it to clients that accept gzip.

backend static {
    .host = "127.0.0.1";
    .port = "@@ORIGIN_PORT@@";
    .first_byte_timeout = 60s;
    .between_bytes_timeout = 60s;
}

backend fake {
    .host = "127.0.0.1";
    .port = "@@FAKE_PORT@@";
    .first_byte_timeout = 30s;
}

sub vcl_recv {
    if (req.url ~ "^/o/") {
        set req.backend_hint = static;
        set req.url = regsub(req.url, "^/o", "");
    } else if (req.url ~ "^/f/") {
        set req.backend_hint = fake;
        set req.url = regsub(req.url, "^/f", "");
    } else if (req.url ~ "^/p/") {
        # scenario 11: pass-through, never cached
        set req.backend_hint = static;
        set req.url = regsub(req.url, "^/p", "");
        unset req.http.Cookie;
        return (pass);
    } else {
        return (synth(404));
    }
    unset req.http.Cookie;
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    return (hash);
}

sub vcl_backend_response {
    set beresp.ttl = 10m;
    set beresp.grace = 1m;
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}

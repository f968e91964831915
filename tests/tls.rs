//! TLS and mutual TLS, with certificates made at run time: nothing secret is committed. In a
//! build without TLS (`--no-default-features`), asking for TLS is a clear error.

mod common;

#[cfg(not(tls))]
#[test]
fn without_the_tls_feature_asking_for_tls_says_how_to_get_it() {
    let mut config = common::local();
    config.tls = Some(greeter::ServerTls {
        cert_chain: vec![],
        private_key: vec![],
        client_ca: None,
        client_cert: greeter::ClientCert::Required,
    });
    let err = config.start().err().expect("a TLS server cannot start without the feature");
    assert!(err.to_string().contains("rebuild with the default features"), "{err}");
}

#[cfg(tls)]
mod with_tls {
    use std::time::Duration;

    use super::common::pki::{Issued, PemFiles, Pki};
    use super::common::tools::{run_ok, tools};
    use super::common::TestServer;
    use greeter::blocking::Greeter;
    use greeter::{ClientTls, ServerTls};
    use grpcio::RpcStatusCode;

    fn tls_server(pki: &Pki, client_ca: Option<Vec<u8>>) -> TestServer {
        let mut config = super::common::local();
        config.greeter.stock_interval = Duration::from_millis(5);
        config.tls = Some(ServerTls { client_ca, ..pki.server_tls(false) });
        TestServer::start(config)
    }

    fn client(server: &TestServer, pki: &Pki, identity: Option<Issued>) -> Greeter {
        let tls = ClientTls {
            server_ca: Some(pki.ca_pem()),
            identity: identity.map(|i| (i.cert.into_bytes(), i.key.into_bytes())),
            server_name: None,
        };
        greeter::Greeter::builder(&server.addr, Duration::from_secs(10)).tls(tls).build().unwrap().into()
    }

    #[test]
    fn tls_round_trip_for_all_four_patterns() {
        let pki = Pki::new("greeter test CA");
        let server = tls_server(&pki, None);
        super::common::assert_all_four_patterns(&client(&server, &pki, None), "TLS");
    }

    #[test]
    fn mutual_tls_round_trip_for_all_four_patterns() {
        let pki = Pki::new("greeter test CA");
        let server = tls_server(&pki, Some(pki.ca_pem()));
        super::common::assert_all_four_patterns(&client(&server, &pki, Some(pki.client())), "mutual TLS");
    }

    #[test]
    fn a_plaintext_client_cannot_talk_to_a_tls_server() {
        let pki = Pki::new("greeter test CA");
        let server = tls_server(&pki, None);
        let err = Greeter::new(&server.addr, Duration::from_secs(5)).say_hello("in clear").unwrap_err();
        assert_eq!(err.code(), Some(RpcStatusCode::UNAVAILABLE), "{err}");
    }

    #[test]
    fn a_client_that_does_not_trust_the_server_ca_is_refused() {
        let pki = Pki::new("greeter test CA");
        let server = tls_server(&pki, None);
        let stranger = Pki::new("some other CA");
        let err = client(&server, &stranger, None).say_hello("?").unwrap_err();
        assert_eq!(err.code(), Some(RpcStatusCode::UNAVAILABLE), "{err}");
    }

    #[test]
    fn mutual_tls_refuses_a_client_without_a_certificate() {
        let pki = Pki::new("greeter test CA");
        let server = tls_server(&pki, Some(pki.ca_pem()));
        let err = client(&server, &pki, None).say_hello("no cert").unwrap_err();
        assert_eq!(err.code(), Some(RpcStatusCode::UNAVAILABLE), "{err}");
        // The server is fine for those who have one.
        assert_eq!(client(&server, &pki, Some(pki.client())).say_hello("cert").unwrap(), "Hello cert");
    }

    #[test]
    fn mutual_tls_refuses_a_client_certificate_from_another_ca() {
        let pki = Pki::new("greeter test CA");
        let server = tls_server(&pki, Some(pki.ca_pem()));
        let stranger = Pki::new("some other CA");
        let err = client(&server, &pki, Some(stranger.client())).say_hello("forged").unwrap_err();
        assert_eq!(err.code(), Some(RpcStatusCode::UNAVAILABLE), "{err}");
    }

    #[test]
    fn go_and_python_clients_pass_over_mutual_tls() {
        let pki = Pki::new("greeter test CA");
        let server = tls_server(&pki, Some(pki.ca_pem()));
        let files = PemFiles::new(&pki, pki.client());
        let tools = tools();
        for (mut cmd, what) in [
            (tools.go_bin("interop-client"), "the Go client over mTLS"),
            (tools.python("tests/interop/python/interop_client.py"), "the Python client over mTLS"),
        ] {
            cmd.args(["--addr", &server.addr]);
            cmd.args(["--tls-ca", &files.path("ca.pem"), "--tls-cert", &files.path("client.pem")]);
            cmd.args(["--tls-key", &files.path("client.key")]);
            let out = run_ok(cmd, what);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.lines().any(|l| l == "OK all four patterns"), "{what}:\n{stdout}");
        }
    }
}

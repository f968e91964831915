//! gRPC server reflection (`grpc.reflection.v1` and `v1alpha`), so grpcurl, ghz and Python's
//! reflection client can list, describe and call our services without a copy of the protos.
//!
//! [`DescriptorIndex`] is built once from the `FileDescriptor`s that rust-protobuf generated
//! for the registered services (the same descriptors the code was generated from, so they
//! cannot drift) and their imports. Each reflection stream then answers one response per
//! request, sending a file's imports only if the stream has not received them yet.
//!
//! The two protocol versions have identical wire formats; the v1alpha service transcodes its
//! messages to v1 and back instead of duplicating the logic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use grpcio::{RpcStatus, RpcStatusCode};
use protobuf::descriptor::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto};
use protobuf::reflect::FileDescriptor;
use protobuf::{Message, MessageField};

use crate::call::{Replies, Requests, Service};
use crate::proto::reflection::{v1, v1alpha};
use v1::server_reflection_request::Message_request as Question;
use v1::server_reflection_response::Message_response as Answer;

/// Everything reflection can tell about a set of proto files, indexed by name.
#[derive(Debug, Default)]
pub(crate) struct DescriptorIndex {
    /// File name → serialized `FileDescriptorProto` and the names of its direct imports.
    files: HashMap<String, IndexedFile>,
    /// Fully-qualified symbol (no leading dot) → the file that defines it.
    symbols: HashMap<String, String>,
    /// Fully-qualified message name → (extension number → defining file).
    extensions: HashMap<String, BTreeMap<i32, String>>,
    /// Fully-qualified names of the services the server exposes, sorted.
    services: Vec<String>,
}

#[derive(Debug)]
struct IndexedFile {
    bytes: Vec<u8>,
    imports: Vec<String>,
}

impl DescriptorIndex {
    /// Indexes `roots` (the files of the services the server registers) and their imports.
    /// Every service defined in a root file is listed.
    #[cfg(test)]
    pub(crate) fn new(roots: &[&FileDescriptor]) -> Self {
        let services: Vec<String> =
            roots.iter().flat_map(|r| r.proto().service.iter().map(|s| qualify(r.package(), s.name()))).collect();
        Self::serving(roots.iter().copied(), services)
    }

    /// Indexes `files` and their imports, listing exactly `services` (the ones served).
    pub(crate) fn serving<'a>(files: impl IntoIterator<Item = &'a FileDescriptor>, services: Vec<String>) -> Self {
        let mut index = DescriptorIndex { services, ..Default::default() };
        for file in files {
            index.add_file(file);
        }
        index.services.sort();
        index.services.dedup();
        index
    }

    fn add_file(&mut self, file: &FileDescriptor) {
        let proto = file.proto();
        if self.files.contains_key(proto.name()) {
            return;
        }
        for dep in file.deps() {
            self.add_file(dep);
        }
        self.index_symbols(proto);
        let bytes = proto.write_to_bytes().expect("a generated descriptor serializes");
        let imports = proto.dependency.clone();
        self.files.insert(proto.name().to_owned(), IndexedFile { bytes, imports });
    }

    fn index_symbols(&mut self, file: &FileDescriptorProto) {
        let (name, package) = (file.name(), file.package());
        if !package.is_empty() {
            // A package may span files: it names the first one indexed.
            self.symbols.entry(package.to_owned()).or_insert_with(|| name.to_owned());
        }
        for service in &file.service {
            let service_name = qualify(package, service.name());
            for method in &service.method {
                self.define(format!("{service_name}.{}", method.name()), name);
            }
            self.define(service_name, name);
        }
        for message in &file.message_type {
            self.index_message(&qualify(package, message.name()), message, name);
        }
        self.index_enums(package, &file.enum_type, name);
        self.index_extensions(package, &file.extension, name);
    }

    fn index_message(&mut self, full_name: &str, message: &DescriptorProto, file: &str) {
        self.define(full_name.to_owned(), file);
        for field in &message.field {
            self.define(format!("{full_name}.{}", field.name()), file);
        }
        for oneof in &message.oneof_decl {
            self.define(format!("{full_name}.{}", oneof.name()), file);
        }
        for nested in &message.nested_type {
            self.index_message(&format!("{full_name}.{}", nested.name()), nested, file);
        }
        self.index_enums(full_name, &message.enum_type, file);
        self.index_extensions(full_name, &message.extension, file);
    }

    /// Enum values are scoped beside their enum, as in protobuf's own name resolution.
    fn index_enums(&mut self, scope: &str, enums: &[EnumDescriptorProto], file: &str) {
        for e in enums {
            self.define(qualify(scope, e.name()), file);
            for value in &e.value {
                self.define(qualify(scope, value.name()), file);
            }
        }
    }

    fn index_extensions(&mut self, scope: &str, extensions: &[FieldDescriptorProto], file: &str) {
        for ext in extensions {
            self.define(qualify(scope, ext.name()), file);
            let extendee = ext.extendee().trim_start_matches('.').to_owned();
            self.extensions.entry(extendee).or_default().insert(ext.number(), file.to_owned());
        }
    }

    fn define(&mut self, symbol: String, file: &str) {
        self.symbols.insert(symbol, file.to_owned());
    }

    /// `file` first, then its transitive imports that `sent` does not hold yet; records them
    /// all as sent. The requested file itself is always included, so no answer is empty.
    fn file_with_imports(&self, file: &str, sent: &mut HashSet<String>) -> Vec<Vec<u8>> {
        let mut out = vec![self.files[file].bytes.clone()];
        sent.insert(file.to_owned());
        let mut queue: Vec<&str> = self.files[file].imports.iter().map(String::as_str).collect();
        while let Some(name) = queue.pop() {
            if let Some(entry) = self.files.get(name) {
                if sent.insert(name.to_owned()) {
                    out.push(entry.bytes.clone());
                    queue.extend(entry.imports.iter().map(String::as_str));
                }
            }
        }
        out
    }

    /// The answer to one reflection question, given what this stream was already sent.
    pub(crate) fn answer(
        &self,
        request: &v1::ServerReflectionRequest,
        sent: &mut HashSet<String>,
    ) -> v1::ServerReflectionResponse {
        let answer = match &request.message_request {
            Some(Question::FileByFilename(name)) => match self.files.contains_key(name) {
                true => files(self.file_with_imports(name, sent)),
                false => not_found(format!("file not found: {name}")),
            },
            Some(Question::FileContainingSymbol(symbol)) => match self.symbols.get(symbol.trim_start_matches('.')) {
                Some(file) => files(self.file_with_imports(file, sent)),
                None => not_found(format!("symbol not found: {symbol}")),
            },
            Some(Question::FileContainingExtension(ext)) => {
                let extendee = ext.containing_type.trim_start_matches('.');
                match self.extensions.get(extendee).and_then(|by_number| by_number.get(&ext.extension_number)) {
                    Some(file) => files(self.file_with_imports(file, sent)),
                    None => {
                        not_found(format!("extension {} of {} not found", ext.extension_number, ext.containing_type))
                    }
                }
            }
            Some(Question::AllExtensionNumbersOfType(type_name)) => {
                let name = type_name.trim_start_matches('.');
                if self.symbols.contains_key(name) {
                    let numbers = self.extensions.get(name).map(|m| m.keys().copied().collect()).unwrap_or_default();
                    Answer::AllExtensionNumbersResponse(v1::ExtensionNumberResponse {
                        base_type_name: name.to_owned(),
                        extension_number: numbers,
                        ..Default::default()
                    })
                } else {
                    not_found(format!("type not found: {type_name}"))
                }
            }
            Some(Question::ListServices(_)) => Answer::ListServicesResponse(v1::ListServiceResponse {
                service: self
                    .services
                    .iter()
                    .map(|name| v1::ServiceResponse { name: name.clone(), ..Default::default() })
                    .collect(),
                ..Default::default()
            }),
            None => error(
                RpcStatusCode::INVALID_ARGUMENT,
                "the request asks nothing: set one of its message_request fields".into(),
            ),
        };
        v1::ServerReflectionResponse {
            valid_host: request.host.clone(),
            original_request: MessageField::some(request.clone()),
            message_response: Some(answer),
            ..Default::default()
        }
    }
}

fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

fn files(file_descriptor_proto: Vec<Vec<u8>>) -> Answer {
    Answer::FileDescriptorResponse(v1::FileDescriptorResponse { file_descriptor_proto, ..Default::default() })
}

fn not_found(message: String) -> Answer {
    error(RpcStatusCode::NOT_FOUND, message)
}

fn error(code: RpcStatusCode, error_message: String) -> Answer {
    Answer::ErrorResponse(v1::ErrorResponse { error_code: code.into(), error_message, ..Default::default() })
}

const V1: &str = "grpc.reflection.v1.ServerReflection";
const V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// Both reflection versions, describing `served` and themselves, from one shared index.
pub(crate) fn reflection_services(served: &[&Service]) -> [Service; 2] {
    let mut files: Vec<&FileDescriptor> = served.iter().map(|s| s.file()).collect();
    files.extend([v1::file_descriptor(), v1alpha::file_descriptor()]);
    let mut names: Vec<String> = served.iter().map(|s| s.name().to_owned()).collect();
    names.extend([V1.to_owned(), V1ALPHA.to_owned()]);
    let index = Arc::new(DescriptorIndex::serving(files, names));
    let (for_v1, for_v1alpha) = (index.clone(), index);
    [
        Service::new(v1::file_descriptor(), V1).bidi("ServerReflectionInfo", move |_, requests, replies| {
            answer_each::<v1::ServerReflectionRequest, v1::ServerReflectionResponse>(for_v1.clone(), requests, replies)
        }),
        Service::new(v1alpha::file_descriptor(), V1ALPHA).bidi("ServerReflectionInfo", move |_, requests, replies| {
            answer_each::<v1alpha::ServerReflectionRequest, v1alpha::ServerReflectionResponse>(
                for_v1alpha.clone(),
                requests,
                replies,
            )
        }),
    ]
}

/// Answers each request on the stream, in order; a question we cannot answer gets an
/// `error_response` and the stream stays open.
async fn answer_each<Req: Message, Resp: Message>(
    index: Arc<DescriptorIndex>,
    mut requests: Requests<Req>,
    mut replies: Replies<Resp>,
) -> Result<(), RpcStatus> {
    let mut sent = HashSet::new();
    while let Some(request) = requests.message().await? {
        let response = index.answer(&transcode(&request), &mut sent);
        replies.send(transcode(&response)).await?;
    }
    Ok(())
}

/// Re-reads a message as another type with the same wire format (v1 ⇄ v1alpha).
fn transcode<A: Message, B: Message>(message: &A) -> B {
    let bytes = message.write_to_bytes().expect("a parsed message serializes");
    B::parse_from_bytes(&bytes).expect("v1 and v1alpha share one wire format")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files beyond our own protos: a proto2 file with nesting and an extension, and a
    /// file importing it, parsed at test time so the index sees real descriptors.
    fn test_index() -> DescriptorIndex {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.proto"),
            r#"syntax = "proto2";
            package test.base;
            message Outer {
              message Inner { optional string text = 1; }
              enum Kind { KIND_A = 0; }
              optional Inner inner = 1;
              oneof choice { int32 number = 2; }
              extensions 100 to 199;
            }"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("user.proto"),
            r#"syntax = "proto2";
            package test.user;
            import "base.proto";
            extend test.base.Outer { optional int32 weight = 150; }
            service Users { rpc Get (test.base.Outer) returns (test.base.Outer.Inner); }"#,
        )
        .unwrap();
        let parsed = protobuf_parse::Parser::new()
            .pure()
            .include(dir.path())
            .inputs([dir.path().join("base.proto"), dir.path().join("user.proto")])
            .parse_and_typecheck()
            .unwrap();
        let fds = FileDescriptor::new_dynamic_fds(parsed.file_descriptors, &[]).unwrap();
        let user = fds.iter().find(|f| f.name() == "user.proto").unwrap();
        DescriptorIndex::new(&[user])
    }

    fn ask(index: &DescriptorIndex, sent: &mut HashSet<String>, question: Question) -> Answer {
        let request = v1::ServerReflectionRequest {
            host: "localhost".into(),
            message_request: Some(question),
            ..Default::default()
        };
        let response = index.answer(&request, sent);
        assert_eq!(response.valid_host, "localhost");
        assert_eq!(*response.original_request, request);
        response.message_response.unwrap()
    }

    /// The file names in a file answer, in order.
    fn file_names(answer: Answer) -> Vec<String> {
        match answer {
            Answer::FileDescriptorResponse(r) => r
                .file_descriptor_proto
                .iter()
                .map(|bytes| FileDescriptorProto::parse_from_bytes(bytes).unwrap().name().to_owned())
                .collect(),
            other => panic!("expected files, got {other:?}"),
        }
    }

    fn error_code(answer: Answer) -> i32 {
        match answer {
            Answer::ErrorResponse(e) => {
                assert!(!e.error_message.is_empty());
                e.error_code
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// The index the Greeter server serves, built as `reflection_services` builds it.
    fn greeter_server_index() -> DescriptorIndex {
        let files = [
            crate::proto::file_descriptor(),
            crate::proto::health::file_descriptor(),
            v1::file_descriptor(),
            v1alpha::file_descriptor(),
        ];
        let names = ["greeter.Greeter", "grpc.health.v1.Health", V1, V1ALPHA].map(str::to_owned).to_vec();
        DescriptorIndex::serving(files, names)
    }

    #[test]
    fn lists_every_service_of_the_greeter_server() {
        let index = greeter_server_index();
        let Answer::ListServicesResponse(list) =
            ask(&index, &mut HashSet::new(), Question::ListServices(String::new()))
        else {
            panic!("expected a service list")
        };
        let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "greeter.Greeter",
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection"
            ]
        );
    }

    #[test]
    fn file_by_filename_returns_the_descriptor_the_code_was_generated_from() {
        let index = greeter_server_index();
        let answer = ask(&index, &mut HashSet::new(), Question::FileByFilename("greeter.proto".into()));
        let Answer::FileDescriptorResponse(r) = answer else { panic!("expected a file") };
        let file = FileDescriptorProto::parse_from_bytes(&r.file_descriptor_proto[0]).unwrap();
        assert_eq!(&file, crate::proto::file_descriptor().proto());
        assert_eq!(file.service[0].method.len(), 4);
        assert_eq!(error_code(ask(&index, &mut HashSet::new(), Question::FileByFilename("nope.proto".into()))), 5);
    }

    #[test]
    fn file_containing_symbol_finds_every_kind_of_symbol() {
        let index = greeter_server_index();
        let cases = [
            ("greeter", "greeter.proto"),
            ("greeter.Greeter", "greeter.proto"),
            ("greeter.Greeter.Chat", "greeter.proto"),
            ("greeter.HelloRequest", "greeter.proto"),
            (".greeter.StockReply", "greeter.proto"),
            ("greeter.StockReply.price", "greeter.proto"),
            ("grpc.health.v1.HealthCheckResponse.ServingStatus", "health.proto"),
            ("grpc.health.v1.HealthCheckResponse.SERVING", "health.proto"),
            ("grpc.health.v1.HealthListResponse.StatusesEntry", "health.proto"),
            (
                "grpc.reflection.v1alpha.ServerReflectionRequest.message_request",
                "grpc/reflection/v1alpha/reflection.proto",
            ),
        ];
        for (symbol, file) in cases {
            let names = file_names(ask(&index, &mut HashSet::new(), Question::FileContainingSymbol(symbol.into())));
            assert!(names[0].ends_with(file), "{symbol}: {names:?}");
        }
        let nested = test_index();
        for symbol in
            ["test.base.Outer.Inner", "test.base.Outer.Inner.text", "test.base.Outer.Kind", "test.base.Outer.choice"]
        {
            let names = file_names(ask(&nested, &mut HashSet::new(), Question::FileContainingSymbol(symbol.into())));
            assert_eq!(names[0], "base.proto", "{symbol}");
        }
        for unknown in ["greeter.Nope", "greeter.Greeter.SayGoodbye", "greeter.HelloRequest.nick", ""] {
            let answer = ask(&index, &mut HashSet::new(), Question::FileContainingSymbol(unknown.into()));
            assert_eq!(error_code(answer), 5, "{unknown:?}");
        }
    }

    #[test]
    fn imports_are_sent_once_per_stream_and_the_asked_file_always() {
        let index = test_index();
        let mut sent = HashSet::new();
        let ask_symbol = |sent: &mut HashSet<String>, s: &str| {
            file_names(ask(&index, sent, Question::FileContainingSymbol(s.into())))
        };
        assert_eq!(ask_symbol(&mut sent, "test.user.Users"), ["user.proto", "base.proto"]);
        assert_eq!(ask_symbol(&mut sent, "test.user.Users.Get"), ["user.proto"]);
        assert_eq!(ask_symbol(&mut sent, "test.base.Outer"), ["base.proto"]);
        // A new stream starts afresh.
        assert_eq!(ask_symbol(&mut HashSet::new(), "test.user.Users"), ["user.proto", "base.proto"]);
    }

    #[test]
    fn extensions_are_found_by_type_and_number() {
        let index = test_index();
        let by_number = |n| {
            let ext = v1::ExtensionRequest {
                containing_type: "test.base.Outer".into(),
                extension_number: n,
                ..Default::default()
            };
            ask(&index, &mut HashSet::new(), Question::FileContainingExtension(ext))
        };
        assert_eq!(file_names(by_number(150))[0], "user.proto");
        assert_eq!(error_code(by_number(151)), 5);

        let numbers = |t: &str| ask(&index, &mut HashSet::new(), Question::AllExtensionNumbersOfType(t.into()));
        let Answer::AllExtensionNumbersResponse(r) = numbers("test.base.Outer") else { panic!() };
        assert_eq!((r.base_type_name.as_str(), r.extension_number.as_slice()), ("test.base.Outer", &[150][..]));
        assert_eq!(error_code(numbers("test.base.Nope")), 5);
    }

    #[test]
    fn proto3_types_have_no_extensions_but_a_proper_answer() {
        let index = greeter_server_index();
        let answer =
            ask(&index, &mut HashSet::new(), Question::AllExtensionNumbersOfType("greeter.HelloRequest".into()));
        let Answer::AllExtensionNumbersResponse(r) = answer else { panic!("expected numbers") };
        assert_eq!(r.base_type_name, "greeter.HelloRequest");
        assert!(r.extension_number.is_empty());
        let ext = v1::ExtensionRequest {
            containing_type: "greeter.HelloRequest".into(),
            extension_number: 1,
            ..Default::default()
        };
        assert_eq!(error_code(ask(&index, &mut HashSet::new(), Question::FileContainingExtension(ext))), 5);
    }

    #[test]
    fn an_empty_request_is_invalid_argument() {
        let index = greeter_server_index();
        let response = index.answer(&v1::ServerReflectionRequest::default(), &mut HashSet::new());
        assert_eq!(error_code(response.message_response.unwrap()), 3);
    }
}

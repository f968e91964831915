// The tutorial's Greeter on gRPC C++ (C-core), for bench/run: the async API with ONE
// ServerCompletionQueue polled by ONE thread (the main thread), so all handler work happens
// on that thread like our one-completion-queue grpcio server.
//
//   greeter-cpp-server [--host H] [--port P] [--ticks N] [--interval-ms MS]
//
// Prints "LISTENING <port>" once serving; SIGTERM ends it (default action).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include "greeter.grpc.pb.h"

using grpc::ServerAsyncReader;
using grpc::ServerAsyncReaderWriter;
using grpc::ServerAsyncResponseWriter;
using grpc::ServerAsyncWriter;
using grpc::ServerCompletionQueue;
using grpc::ServerContext;
using grpc::Status;

static int g_ticks = 5;
static int g_interval_ms = 500;

// Every call is a state machine; its address is the tag of its one outstanding operation.
struct Call {
  virtual ~Call() = default;
  virtual void Proceed(bool ok) = 0;
};

struct Env {
  greeter::Greeter::AsyncService* service;
  ServerCompletionQueue* cq;
};

class SayHelloCall final : public Call {
 public:
  explicit SayHelloCall(Env env) : env_(env), responder_(&ctx_) {
    env_.service->RequestSayHello(&ctx_, &req_, &responder_, env_.cq, env_.cq, this);
  }
  void Proceed(bool ok) override {
    if (state_ == kWaiting) {
      new SayHelloCall(env_);  // accept the next call
      if (!ok) { delete this; return; }
      reply_.set_message("Hello " + req_.name());
      state_ = kFinishing;
      responder_.Finish(reply_, Status::OK, this);
    } else {
      delete this;
    }
  }

 private:
  enum { kWaiting, kFinishing } state_ = kWaiting;
  Env env_;
  ServerContext ctx_;
  greeter::HelloRequest req_;
  greeter::HelloReply reply_;
  ServerAsyncResponseWriter<greeter::HelloReply> responder_;
};

class StockCall final : public Call {
 public:
  explicit StockCall(Env env) : env_(env), writer_(&ctx_), rng_(std::random_device{}()) {
    env_.service->RequestGetStockPrice(&ctx_, &req_, &writer_, env_.cq, env_.cq, this);
  }
  void Proceed(bool ok) override {
    switch (state_) {
      case kWaiting:
        new StockCall(env_);
        if (!ok) { delete this; return; }
        std::fprintf(stderr, "Received subscription: %s\n", req_.symbol().c_str());
        Next();
        return;
      case kPacing:
        if (!ok) { Finish(); return; }  // alarm cancelled
        Send();
        return;
      case kWriting:
        if (!ok) { delete this; return; }  // client gone
        Next();
        return;
      case kFinishing:
        delete this;
        return;
    }
  }

 private:
  void Next() {
    if (sent_ >= g_ticks) { Finish(); return; }
    if (sent_ > 0 && g_interval_ms > 0) {
      state_ = kPacing;
      alarm_.Set(env_.cq, std::chrono::system_clock::now() + std::chrono::milliseconds(g_interval_ms), this);
      return;
    }
    Send();
  }
  void Send() {
    reply_.set_symbol(req_.symbol());
    reply_.set_price(500.0 + dist_(rng_) * 100.0);
    ++sent_;
    state_ = kWriting;
    writer_.Write(reply_, this);
  }
  void Finish() {
    state_ = kFinishing;
    writer_.Finish(Status::OK, this);
  }
  enum { kWaiting, kPacing, kWriting, kFinishing } state_ = kWaiting;
  Env env_;
  ServerContext ctx_;
  greeter::StockRequest req_;
  greeter::StockReply reply_;
  ServerAsyncWriter<greeter::StockReply> writer_;
  grpc::Alarm alarm_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> dist_{0.0, 1.0};
  int sent_ = 0;
};

class MetricsCall final : public Call {
 public:
  explicit MetricsCall(Env env) : env_(env), reader_(&ctx_) {
    env_.service->RequestRecordMetrics(&ctx_, &reader_, env_.cq, env_.cq, this);
  }
  void Proceed(bool ok) override {
    switch (state_) {
      case kWaiting:
        new MetricsCall(env_);
        if (!ok) { delete this; return; }
        state_ = kReading;
        reader_.Read(&metric_, this);
        return;
      case kReading:
        if (!ok) {  // half-close: reply with the summary
          greeter::MetricSummary summary;
          summary.set_count(count_);
          summary.set_average(count_ > 0 ? sum_ / count_ : 0.0);
          state_ = kFinishing;
          reader_.Finish(summary, Status::OK, this);
          return;
        }
        if (!std::isfinite(metric_.value())) {
          state_ = kFinishing;
          reader_.FinishWithError(Status(grpc::StatusCode::INVALID_ARGUMENT, "metric value must be finite"), this);
          return;
        }
        sum_ += metric_.value();
        ++count_;
        reader_.Read(&metric_, this);
        return;
      case kFinishing:
        delete this;
        return;
    }
  }

 private:
  enum { kWaiting, kReading, kFinishing } state_ = kWaiting;
  Env env_;
  ServerContext ctx_;
  greeter::Metric metric_;
  ServerAsyncReader<greeter::MetricSummary, greeter::Metric> reader_;
  double sum_ = 0;
  int count_ = 0;
};

class ChatCall final : public Call {
 public:
  explicit ChatCall(Env env) : env_(env), stream_(&ctx_) {
    env_.service->RequestChat(&ctx_, &stream_, env_.cq, env_.cq, this);
  }
  void Proceed(bool ok) override {
    switch (state_) {
      case kWaiting:
        new ChatCall(env_);
        if (!ok) { delete this; return; }
        Read();
        return;
      case kReading:
        if (!ok) {  // half-close
          state_ = kFinishing;
          stream_.Finish(Status::OK, this);
          return;
        }
        reply_.set_user("Server");
        reply_.set_message("Server received: " + in_.message());
        state_ = kWriting;
        stream_.Write(reply_, this);
        return;
      case kWriting:
        if (!ok) { delete this; return; }
        Read();
        return;
      case kFinishing:
        delete this;
        return;
    }
  }

 private:
  void Read() {
    state_ = kReading;
    stream_.Read(&in_, this);
  }
  enum { kWaiting, kReading, kWriting, kFinishing } state_ = kWaiting;
  Env env_;
  ServerContext ctx_;
  greeter::ChatMessage in_, reply_;
  ServerAsyncReaderWriter<greeter::ChatMessage, greeter::ChatMessage> stream_;
};

static const char* Flag(int argc, char** argv, const char* name, const char* def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return def;
}

int main(int argc, char** argv) {
  std::string host = Flag(argc, argv, "--host", "127.0.0.1");
  std::string port = Flag(argc, argv, "--port", "0");
  g_ticks = std::atoi(Flag(argc, argv, "--ticks", "5"));
  g_interval_ms = std::atoi(Flag(argc, argv, "--interval-ms", "500"));

  greeter::Greeter::AsyncService service;
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(host + ":" + port, grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(&service);
  std::unique_ptr<ServerCompletionQueue> cq = builder.AddCompletionQueue();
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    std::fprintf(stderr, "Failed to listen on %s:%s\n", host.c_str(), port.c_str());
    return 1;
  }
  Env env{&service, cq.get()};
  // A few calls of each kind waiting, so a burst of new calls never waits for a re-arm.
  for (int i = 0; i < 8; ++i) {
    new SayHelloCall(env);
    new StockCall(env);
    new MetricsCall(env);
    new ChatCall(env);
  }
  std::printf("LISTENING %d\n", bound);
  std::fflush(stdout);

  void* tag;
  bool ok;
  while (cq->Next(&tag, &ok)) static_cast<Call*>(tag)->Proceed(ok);
  return 0;
}

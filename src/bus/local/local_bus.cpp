#include "bus/local/local_bus.hpp"

namespace converge {

namespace {

class LocalBus final : public Bus {
 public:
  std::string engine_name() const override { return "local"; }
  void set_listener(BusListener* l) override { listener_ = l; }
  void publish(std::vector<std::shared_ptr<const Delivery>> batch) override {
    if (listener_) listener_->on_deliveries(batch);
  }
  void publish(std::shared_ptr<const Notice> n) override {
    if (listener_) listener_->on_notice(n);
  }

 private:
  BusListener* listener_ = nullptr;
};

}  // namespace

std::unique_ptr<Bus> make_local_bus() {
  return std::make_unique<LocalBus>();
}

}  // namespace converge

/* The smallest possible state echo, the floor of `cargo bench --bench lean`:
 * an MQTT 5 client (libmosquitto) that republishes every message on its
 * command topic to its state topic, retained at QoS 0, as the agent
 * publishes its state. Prints "ready" once subscribed.
 *
 * Usage: echo HOST PORT COMMAND_TOPIC STATE_TOPIC
 * Build: cc -O2 -o echo benches/echo.c -lmosquitto (libmosquitto-dev). */
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>

static const char *command_topic;
static const char *state_topic;

static void on_connect(struct mosquitto *m, void *user, int rc)
{
	(void)user;
	if (rc != 0) {
		fprintf(stderr, "echo: refused (%d)\n", rc);
		exit(1);
	}
	mosquitto_subscribe(m, NULL, command_topic, 1);
}

static void on_subscribe(struct mosquitto *m, void *user, int mid, int n, const int *qos)
{
	(void)m, (void)user, (void)mid, (void)n, (void)qos;
	printf("ready\n");
	fflush(stdout);
}

static void on_message(struct mosquitto *m, void *user, const struct mosquitto_message *msg)
{
	(void)user;
	mosquitto_publish(m, NULL, state_topic, msg->payloadlen, msg->payload, 0, true);
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: echo HOST PORT COMMAND_TOPIC STATE_TOPIC\n");
		return 2;
	}
	command_topic = argv[3];
	state_topic = argv[4];
	mosquitto_lib_init();
	struct mosquitto *m = mosquitto_new("lean-echo", true, NULL);
	if (m == NULL)
		return 1;
	mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_callback_set(m, on_connect);
	mosquitto_subscribe_callback_set(m, on_subscribe);
	mosquitto_message_callback_set(m, on_message);
	if (mosquitto_connect(m, argv[1], atoi(argv[2]), 30) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "echo: cannot connect to %s:%s\n", argv[1], argv[2]);
		return 1;
	}
	return mosquitto_loop_forever(m, -1, 1);
}

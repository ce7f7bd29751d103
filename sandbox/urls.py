from django.urls import path

from sandbox import views

app_name = "sandbox"
urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("api/bots/<int:bot_id>/messages", views.messages_api, name="messages"),
    path("api/bots/<int:bot_id>/send", views.send_api, name="send"),
]
